package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// routes registers every route. The groups live in their own files.
func (a *API) routes() {
	a.resourceRoutes() // repos, builds, jobs, secrets, tokens, artifacts, openapi
	a.streamRoutes()   // logs and events, plain and as server-sent events
	a.hookRoutes()     // push webhooks
	a.uiRoutes()       // the web UI at /
	a.mux.HandleFunc("/api/", a.noRoute)
}

// noRoute answers /api/ requests no route takes: 405 (with Allow) when
// the path exists for other methods, else 404.
func (a *API) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "" && pattern != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s %s: allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
}

// handlerFunc is an authenticated handler: tok is the caller's token.
type handlerFunc func(w http.ResponseWriter, r *http.Request, tok contracts.Token)

// handle registers an /api/ route that needs a token with at least scope.
// Every route goes through handle or handlePublic, so Patterns lists them
// all (the OpenAPI test checks the document against it).
func (a *API) handle(pattern string, scope contracts.TokenScope, h handlerFunc) {
	a.patterns = append(a.patterns, pattern)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		tok, ok := a.authenticate(w, r, scope)
		if !ok {
			return
		}
		h(w, r, tok)
	})
}

// handlePublic registers a route without bearer auth (webhooks check
// their own signatures; the UI's assets are public).
func (a *API) handlePublic(pattern string, h http.HandlerFunc) {
	a.patterns = append(a.patterns, pattern)
	a.mux.HandleFunc(pattern, h)
}

// Patterns returns the registered route patterns ("GET /api/v1/repos"...).
func (a *API) Patterns() []string { return append([]string(nil), a.patterns...) }

// scopeRank orders the scopes: each includes the ones below.
func scopeRank(s contracts.TokenScope) int {
	switch s {
	case contracts.ScopeRead:
		return 1
	case contracts.ScopeWrite:
		return 2
	case contracts.ScopeAdmin:
		return 3
	}
	return 0
}

// authenticate checks the bearer token: 401 without a valid one, 403 when
// its scope is below need. The token is looked up by its hash, so the data
// store never compares clear tokens; the cached hash is compared in
// constant time.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request, need contracts.TokenScope) (contracts.Token, bool) {
	tok, err := a.token(r)
	switch {
	case errors.Is(err, errNoToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="zeroci"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "missing bearer token (Authorization: Bearer TOKEN)")
		return tok, false
	case contracts.CodeOf(err) == contracts.CodeUnauthenticated:
		a.metrics.authFailures.Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="zeroci", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "unknown token")
		return tok, false
	case err != nil:
		writeModuleError(w, a, err)
		return tok, false
	case scopeRank(tok.Scope) < scopeRank(need):
		writeError(w, http.StatusForbidden, "permission_denied", fmt.Sprintf("token %q has scope %s; this needs %s", tok.Name, tok.Scope, need))
		return tok, false
	}
	return tok, true
}

// token returns the request's token, from the Authorization header.
func (a *API) token(r *http.Request) (contracts.Token, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return contracts.Token{}, errNoToken
	}
	hash := contracts.TokenHash(strings.TrimSpace(raw))
	now := time.Now()
	a.tokMu.Lock()
	c, ok := a.tokens[hash]
	a.tokMu.Unlock()
	if ok && now.Before(c.expires) && subtle.ConstantTimeCompare([]byte(c.hash), []byte(hash)) == 1 {
		return c.tok, nil
	}
	tok, err := call[contracts.Token](r.Context(), a, contracts.CheckToken{Hash: hash})
	if err != nil {
		return tok, err
	}
	a.tokMu.Lock()
	if len(a.tokens) > 10000 {
		clear(a.tokens)
	}
	a.tokens[hash] = cachedToken{hash: hash, tok: tok, expires: now.Add(tokenCacheTTL)}
	a.tokMu.Unlock()
	return tok, nil
}

// errorBody is every error's JSON (SPEC.md §5).
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// writeError answers with status and {"error", "code"}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// writeModuleError answers with the error another module returned: its
// code and status for a contracts error, 503 when the module could not be
// reached, 500 otherwise (logged).
func writeModuleError(w http.ResponseWriter, a *API, err error) {
	var ce *contracts.Error
	switch {
	case errors.As(err, &ce) && ce.Code.Valid():
		writeError(w, ce.Code.HTTPStatus(), string(ce.Code), ce.Message)
	case errors.Is(err, context.DeadlineExceeded) || contracts.CodeOf(err) == contracts.CodeUnavailable:
		writeError(w, http.StatusServiceUnavailable, string(contracts.CodeUnavailable), "a module did not answer in time; retry")
	default:
		a.log.Error().Err(err).Msg("request failed")
		writeError(w, http.StatusInternalServerError, string(contracts.CodeInternal), "internal error")
	}
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":"internal error","code":"internal"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// decodeBody reads a JSON object into v: at most MaxBody bytes (413),
// no unknown fields, nothing after it (400). It writes the error and
// returns false on failure.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", MaxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_argument", "reading the body: "+err.Error())
		return false
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "invalid_argument", fmt.Sprintf("content type %q: want application/json", ct))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "body: "+jsonProblem(err))
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid_argument", "body: more than one JSON value")
		return false
	}
	return true
}

// jsonProblem says what is wrong with a body in the user's terms.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "empty; want a JSON object"
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q: want %s, got %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("want %s, got %s", typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return err.Error()
}
