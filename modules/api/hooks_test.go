package api_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/modules/api"
)

const hookSecret = "hook-s3cret"

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// hook posts body to repo's webhook with headers, without a token.
func (s *apiServer) hook(t *testing.T, repo string, body []byte, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", s.base+"/api/v1/hooks/"+repo, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// webhookCount reads zeroci_webhooks_total{result}.
func webhookCount(t *testing.T, a *api.API, result string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "zeroci_webhooks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "result" && lp.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func builds(l *local, repo string) []contracts.Build {
	return lcall[contracts.BuildList](l, contracts.ListBuilds{Repo: repo}).Builds
}

// TestHooks: each provider's signed push triggers a build with its ref,
// commit and pusher; a replayed delivery returns the same build and
// triggers nothing; pings and branch deletions build nothing; bad or
// missing signatures, and repositories without a secret, are 401 and
// counted; oversized and malformed bodies are 413 and 400.
func TestHooks(t *testing.T) {
	l := newLocal(t)
	s := l.startAPI(api.Options{NoPoll: true})
	dir := l.pipelineRepo("hooked", "jobs: {hello: {script: [echo hi]}}\n", hookSecret, 0)
	head := gittest.Git(t, dir, "rev-parse", "HEAD")
	l.pipelineRepo("nosecret", "jobs: {hello: {script: [echo hi]}}\n", "", 0)

	push, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": head,
		"pusher": map[string]string{"name": "octocat"}, "sender": map[string]string{"login": "octocat"},
	})
	gitlabPush, _ := json.Marshal(map[string]any{
		"object_kind": "push", "ref": "refs/heads/main", "after": head, "checkout_sha": head, "user_username": "tanuki",
	})
	deletion, _ := json.Marshal(map[string]any{"ref": "refs/heads/gone", "after": strings.Repeat("0", 40), "deleted": true})

	var number int64
	wantBuild := func(name string, code int, out string, user string) contracts.Build {
		t.Helper()
		var b contracts.Build
		if code != 202 || json.Unmarshal([]byte(out), &b) != nil {
			t.Fatalf("%s: %d %s", name, code, out)
		}
		if b.Repo != "hooked" || b.Ref != "refs/heads/main" || !strings.HasPrefix(b.Commit, head[:7]) || b.Event != contracts.TriggerPush || b.User != user {
			t.Fatalf("%s: build %+v", name, b)
		}
		return b
	}

	// GitHub: a push, then the same delivery again.
	gh := []string{"X-GitHub-Event", "push", "X-GitHub-Delivery", "d-gh-1", "X-Hub-Signature-256", "sha256=" + sign(hookSecret, push)}
	code, out := s.hook(t, "hooked", push, gh...)
	b := wantBuild("github", code, out, "octocat")
	number = b.Number
	code, out = s.hook(t, "hooked", push, gh...)
	if again := wantBuild("github replay", code, out, "octocat"); again.Number != number {
		t.Fatalf("a replayed delivery made build %d after %d", again.Number, number)
	}
	if n := len(builds(l, "hooked")); n != 1 {
		t.Fatalf("%d builds after a delivery and its replay", n)
	}

	// Gitea (which also sends GitHub's headers), GitLab, generic.
	code, out = s.hook(t, "hooked", push, "X-Gitea-Event", "push", "X-GitHub-Event", "push", "X-Gitea-Delivery", "d-gitea-1",
		"X-Gitea-Signature", sign(hookSecret, push))
	if b := wantBuild("gitea", code, out, "octocat"); b.Number != number+1 {
		t.Fatalf("gitea: build %d", b.Number)
	}
	code, out = s.hook(t, "hooked", gitlabPush, "X-Gitlab-Event", "Push Hook", "X-Gitlab-Token", hookSecret, "X-Gitlab-Event-UUID", "d-gl-1")
	if b := wantBuild("gitlab", code, out, "tanuki"); b.Number != number+2 {
		t.Fatalf("gitlab: build %d", b.Number)
	}
	generic := []string{"X-Zeroci-Signature", "sha256=" + sign(hookSecret, push)} // no delivery id: the body's hash
	code, out = s.hook(t, "hooked", push, generic...)
	gen := wantBuild("generic", code, out, "octocat")
	code, out = s.hook(t, "hooked", push, generic...)
	if again := wantBuild("generic replay", code, out, "octocat"); again.Number != gen.Number || gen.Number != number+3 {
		t.Fatalf("generic: builds %d and %d", gen.Number, again.Number)
	}
	triggered := len(builds(l, "hooked"))
	if triggered != 4 {
		t.Fatalf("%d builds, want 4", triggered)
	}

	// Nothing to build.
	for name, c := range map[string]struct {
		body   []byte
		header []string
	}{
		"ping":                 {[]byte(`{"zen":"hi","hook_id":1}`), []string{"X-GitHub-Event", "ping", "X-Hub-Signature-256", "sha256=" + sign(hookSecret, []byte(`{"zen":"hi","hook_id":1}`))}},
		"deletion":             {deletion, []string{"X-GitHub-Event", "push", "X-GitHub-Delivery", "d-del", "X-Hub-Signature-256", "sha256=" + sign(hookSecret, deletion)}},
		"issues":               {push, []string{"X-GitHub-Event", "issues", "X-Hub-Signature-256", "sha256=" + sign(hookSecret, push)}},
		"gitlab merge request": {gitlabPush, []string{"X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Token", hookSecret}},
	} {
		if code, out := s.hook(t, "hooked", c.body, c.header...); code != 200 {
			t.Errorf("%s: %d %s, want 200", name, code, out)
		}
	}

	// Refused.
	before := webhookCount(t, s.api, "bad_signature")
	for name, c := range map[string]struct {
		repo   string
		header []string
	}{
		"no signature":        {"hooked", []string{"X-GitHub-Event", "push"}},
		"github wrong secret": {"hooked", []string{"X-GitHub-Event", "push", "X-Hub-Signature-256", "sha256=" + sign("wrong", push)}},
		"github no prefix":    {"hooked", []string{"X-GitHub-Event", "push", "X-Hub-Signature-256", sign(hookSecret, push)}},
		"github not hex":      {"hooked", []string{"X-Hub-Signature-256", "sha256=zz"}},
		"gitea wrong secret":  {"hooked", []string{"X-Gitea-Event", "push", "X-Gitea-Signature", sign("wrong", push)}},
		"gitlab wrong token":  {"hooked", []string{"X-Gitlab-Event", "Push Hook", "X-Gitlab-Token", "wrong"}},
		"gitlab no token":     {"hooked", []string{"X-Gitlab-Event", "Push Hook"}},
		"generic wrong":       {"hooked", []string{"X-Zeroci-Signature", "sha256=" + sign("wrong", push)}},
		"no webhook secret":   {"nosecret", []string{"X-Zeroci-Signature", "sha256=" + sign("", push)}},
		"signed for another":  {"hooked", []string{"X-Zeroci-Signature", "sha256=" + sign(hookSecret, append(push, ' '))}},
	} {
		code, out := s.hook(t, c.repo, push, c.header...)
		if code != 401 || !strings.Contains(out, `"code":"unauthenticated"`) {
			t.Errorf("%s: %d %s, want 401", name, code, out)
		}
	}
	if got := webhookCount(t, s.api, "bad_signature") - before; got != 10 {
		t.Errorf("bad_signature counted %v times, want 10", got)
	}
	if n := len(builds(l, "hooked")) + len(builds(l, "nosecret")); n != triggered {
		t.Fatalf("%d builds after refused and ignored deliveries, want %d", n, triggered)
	}

	// Bad bodies.
	big := bytes.Repeat([]byte("x"), api.MaxBody+1)
	if code, out := s.hook(t, "hooked", big, "X-Zeroci-Signature", "sha256="+sign(hookSecret, big)); code != 413 {
		t.Errorf("oversized: %d %s", code, out)
	}
	bad := []byte(`{"ref": "refs/heads/main",`)
	if code, out := s.hook(t, "hooked", bad, "X-Zeroci-Signature", "sha256="+sign(hookSecret, bad)); code != 400 || !strings.Contains(out, `"code":"invalid_argument"`) {
		t.Errorf("malformed: %d %s", code, out)
	}
	if code, out := s.hook(t, "nope", push, generic...); code != 404 {
		t.Errorf("unknown repo: %d %s", code, out)
	}
	if code, out := s.hook(t, "Bad%20Name", push, generic...); code != 400 {
		t.Errorf("bad repo name: %d %s", code, out)
	}
}

// TestPollTwoReplicas (polling is the other way pushes arrive): two api processes poll the same repository (as two
// replicas behind a load balancer would); each new head of its default
// branch triggers exactly one push build of that commit, none twice, and
// repositories that are not polled get no builds.
func TestPollTwoReplicas(t *testing.T) {
	l := newLocal(t)
	o := api.Options{PollMin: 20 * time.Millisecond, PollMax: 80 * time.Millisecond}
	l.startAPI(o)
	l.startAPI(o)
	const pipeline = "jobs: {hello: {script: [echo hi]}}\n"
	dir := l.pipelineRepo("polled", pipeline, "", contracts.MinPollSeconds)
	l.pipelineRepo("quiet", pipeline, "", 0)

	var heads []string
	for i := 1; i <= 3; i++ {
		if i > 1 {
			gittest.Commit(t, dir, map[string]string{"n.txt": fmt.Sprint(i)})
		}
		heads = append(heads, gittest.Git(t, dir, "rev-parse", "HEAD"))
		waitFor(t, 60*time.Second, fmt.Sprintf("a build of commit %d", i), func() bool {
			return len(builds(l, "polled")) >= i
		})
		// Let both pollers look at this head many times over before the
		// next commit: the build runs for far longer than PollMax.
		l.waitBuild("polled", int64(i))
	}
	got := builds(l, "polled")
	if len(got) != len(heads) {
		t.Fatalf("%d builds for %d commits: %+v", len(got), len(heads), got)
	}
	for _, b := range got {
		want := heads[b.Number-1]
		if b.Commit != want || b.Event != contracts.TriggerPush || b.Ref != "main" || b.Status != contracts.BuildStatusSuccess {
			t.Errorf("build %d: commit %s event %s ref %s status %s, want commit %s", b.Number, b.Commit, b.Event, b.Ref, b.Status, want)
		}
	}
	if n := len(builds(l, "quiet")); n != 0 {
		t.Fatalf("a repository that is not polled got %d builds", n)
	}
}

// TestHookThroughServer: the webhook route of the whole server takes no
// bearer token but the repository's signature.
func TestHookThroughServer(t *testing.T) {
	e := newEnv(t)
	dir := gittest.Repo(t, map[string]string{".zeroci/pipeline.yaml": "jobs: {hello: {script: [echo hi]}}\n"})
	e.json("POST", "/api/v1/repos", map[string]any{"name": "srv", "url": dir, "webhook_secret": hookSecret}, 201, nil)
	push := []byte(`{"ref":"refs/heads/main","after":"` + gittest.Git(t, dir, "rev-parse", "HEAD") + `"}`)
	if code, out := e.do("POST", "/api/v1/hooks/srv", "", push, "X-Zeroci-Signature", "sha256="+sign("wrong", push)); code != 401 {
		t.Fatalf("bad signature: %d %s", code, out)
	}
	code, out := e.do("POST", "/api/v1/hooks/srv", "", push, "X-Zeroci-Signature", "sha256="+sign(hookSecret, push), "X-Zeroci-Delivery", "srv-1")
	var b contracts.Build
	if code != 202 || json.Unmarshal(out, &b) != nil || b.Number != 1 || b.Status != contracts.BuildStatusQueued {
		t.Fatalf("signed push: %d %s", code, out)
	}
}
