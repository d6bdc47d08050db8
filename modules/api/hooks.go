package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/zeroci/zeroci/contracts"
)

// hookRoutes registers the push webhooks.
func (a *API) hookRoutes() {
	a.handlePublic("POST /api/v1/hooks/{repo}", a.postHook)
}

// Webhook results, the label of a.metrics.webhooks.
const (
	hookTriggered    = "triggered"
	hookIgnored      = "ignored"
	hookBadSignature = "bad_signature"
	hookInvalid      = "invalid"
)

// hookProvider is who sent a webhook, told by its headers.
type hookProvider string

const (
	providerGitHub  hookProvider = "github"
	providerGitea   hookProvider = "gitea" // also Forgejo and Gogs
	providerGitLab  hookProvider = "gitlab"
	providerGeneric hookProvider = "generic"
)

// hookRequest is what a delivery says, whatever its provider.
type hookRequest struct {
	provider hookProvider
	event    string // the provider's event name
	delivery string // the provider's delivery id; empty if none
}

// classify tells the provider by its headers. Gitea and Forgejo also send
// GitHub's headers, so they are recognised first.
func classify(h http.Header) hookRequest {
	switch {
	case h.Get("X-Gitlab-Token") != "" || h.Get("X-Gitlab-Event") != "":
		d := h.Get("Idempotency-Key") // the same on GitLab's retries
		if d == "" {
			d = h.Get("X-Gitlab-Event-UUID")
		}
		return hookRequest{provider: providerGitLab, event: h.Get("X-Gitlab-Event"), delivery: d}
	case h.Get("X-Gitea-Signature") != "" || h.Get("X-Gitea-Event") != "" || h.Get("X-Forgejo-Event") != "":
		ev := firstOf(h, "X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event", "X-GitHub-Event")
		d := firstOf(h, "X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery", "X-GitHub-Delivery")
		return hookRequest{provider: providerGitea, event: ev, delivery: d}
	case h.Get("X-Hub-Signature-256") != "" || h.Get("X-GitHub-Event") != "":
		return hookRequest{provider: providerGitHub, event: h.Get("X-GitHub-Event"), delivery: h.Get("X-GitHub-Delivery")}
	}
	return hookRequest{provider: providerGeneric, event: h.Get("X-Zeroci-Event"), delivery: h.Get("X-Zeroci-Delivery")}
}

func firstOf(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// verify checks the delivery's signature against secret in constant time:
// an HMAC-SHA256 of the body (GitHub, Gitea, generic) or the secret itself
// (GitLab's token). An empty secret verifies nothing.
func verify(p hookProvider, h http.Header, body []byte, secret contracts.Secret) bool {
	if secret == "" {
		return false
	}
	switch p {
	case providerGitLab:
		tok := h.Get("X-Gitlab-Token")
		return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(secret)) == 1
	case providerGitea:
		return macEqual(h.Get("X-Gitea-Signature"), body, secret)
	case providerGitHub:
		return signatureEqual(h.Get("X-Hub-Signature-256"), body, secret)
	}
	return signatureEqual(h.Get("X-Zeroci-Signature"), body, secret)
}

// signatureEqual checks a "sha256=HEX" signature.
func signatureEqual(sig string, body []byte, secret contracts.Secret) bool {
	hexMAC, ok := strings.CutPrefix(sig, "sha256=")
	return ok && macEqual(hexMAC, body, secret)
}

// macEqual checks a hex HMAC-SHA256 of body.
func macEqual(hexMAC string, body []byte, secret contracts.Secret) bool {
	got, err := hex.DecodeString(strings.TrimSpace(hexMAC))
	if err != nil || len(got) != sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// pushPayload holds the fields of a push event zeroci reads, in the
// shapes of GitHub, Gitea/Forgejo, GitLab and the generic hook (which
// takes GitHub's).
type pushPayload struct {
	Ref         string `json:"ref"`
	After       string `json:"after"`
	CheckoutSHA string `json:"checkout_sha"` // GitLab; null when a branch is deleted
	Deleted     bool   `json:"deleted"`      // GitHub
	Pusher      struct {
		Name     string `json:"name"`     // GitHub
		Login    string `json:"login"`    // Gitea
		Username string `json:"username"` // Gitea
	} `json:"pusher"`
	Sender struct {
		Login    string `json:"login"`
		Username string `json:"username"`
	} `json:"sender"`
	UserUsername string `json:"user_username"` // GitLab
	User         string `json:"user"`          // generic
}

// commit is the pushed commit.
func (p pushPayload) commit() string {
	if p.CheckoutSHA != "" {
		return p.CheckoutSHA
	}
	return p.After
}

// deletion reports whether the push deletes its ref (nothing to build).
func (p pushPayload) deletion() bool {
	c := p.commit()
	return p.Deleted || c != "" && strings.Trim(c, "0") == ""
}

// user is who pushed, as the provider names them.
func (p pushPayload) user() string {
	for _, u := range []string{p.Pusher.Login, p.Pusher.Username, p.Pusher.Name, p.Sender.Login, p.Sender.Username, p.UserUsername, p.User} {
		if u != "" {
			return u
		}
	}
	return ""
}

// postHook answers a push webhook: 401 unless it is signed with the
// repository's webhook secret, 200 for a ping or a push that builds
// nothing (a branch deletion, another event), 202 with the build for a
// push. A delivery the data store saw already (same delivery id) answers
// the build it made then, and triggers nothing.
func (a *API) postHook(w http.ResponseWriter, r *http.Request) {
	repo := r.PathValue("repo")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		a.metrics.webhooks.WithLabelValues(hookInvalid).Inc()
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", MaxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_argument", "reading the body: "+err.Error())
		return
	}
	if err := (contracts.GetWebhookSecret{Repo: repo}).Validate(); err != nil {
		a.metrics.webhooks.WithLabelValues(hookInvalid).Inc()
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	hr := classify(r.Header)
	sec, err := call[contracts.WebhookSecret](r.Context(), a, contracts.GetWebhookSecret{Repo: repo})
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	if !verify(hr.provider, r.Header, body, sec.Secret) {
		a.metrics.webhooks.WithLabelValues(hookBadSignature).Inc()
		why := "bad or missing signature"
		if sec.Secret == "" {
			why = "the repository has no webhook secret"
		}
		a.log.Warn().Str("repo", repo).Str("provider", string(hr.provider)).Str("remote", r.RemoteAddr).
			Str("delivery", hr.delivery).Msg("webhook refused: " + why)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "webhook refused: "+why)
		return
	}
	if !isPush(hr) {
		a.metrics.webhooks.WithLabelValues(hookIgnored).Inc()
		writeJSON(w, http.StatusOK, map[string]string{"status": "ignored", "event": hr.event})
		return
	}
	var p pushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		a.metrics.webhooks.WithLabelValues(hookInvalid).Inc()
		writeError(w, http.StatusBadRequest, "invalid_argument", "body: "+jsonProblem(err))
		return
	}
	if p.deletion() {
		a.metrics.webhooks.WithLabelValues(hookIgnored).Inc()
		writeJSON(w, http.StatusOK, map[string]string{"status": "ignored", "reason": "the push deletes " + p.Ref})
		return
	}
	b, err := call[contracts.Build](r.Context(), a, contracts.TriggerBuild{
		Repo: repo, Ref: p.Ref, Commit: p.commit(), Event: contracts.TriggerPush,
		User: p.user(), DedupKey: dedupKey(hr.delivery, body),
	})
	if err != nil {
		if contracts.CodeOf(err) == contracts.CodeInvalidArgument {
			a.metrics.webhooks.WithLabelValues(hookInvalid).Inc()
		}
		writeModuleError(w, a, err)
		return
	}
	a.metrics.webhooks.WithLabelValues(hookTriggered).Inc()
	a.log.Info().Str("repo", repo).Int64("build", b.Number).Str("provider", string(hr.provider)).
		Str("delivery", hr.delivery).Str("ref", p.Ref).Msg("webhook push")
	writeJSON(w, http.StatusAccepted, viewBuild(b, true))
}

// isPush reports whether a delivery is a push. A ping, and every event
// other than a push, builds nothing. The generic hook is a push unless it
// says otherwise.
func isPush(hr hookRequest) bool {
	switch hr.provider {
	case providerGitLab:
		return hr.event == "Push Hook" || hr.event == "Tag Push Hook"
	case providerGeneric:
		return hr.event == "" || hr.event == "push"
	}
	return hr.event == "push" || hr.event == ""
}

// dedupKey is the trigger's dedup key: "hook:" and the delivery id (or,
// without one, the SHA-256 of the body), so that a replayed delivery
// triggers once. An id that is long or has unusual bytes is hashed.
func dedupKey(delivery string, body []byte) string {
	if delivery == "" {
		sum := sha256.Sum256(body)
		return "hook:" + hex.EncodeToString(sum[:])
	}
	if len(delivery) > 100 || strings.IndexFunc(delivery, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.:", c))
	}) >= 0 {
		sum := sha256.Sum256([]byte(delivery))
		return "hook:id-" + hex.EncodeToString(sum[:])
	}
	return "hook:" + delivery
}
