package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gittest"
)

// badCase is one bad request and the answer SPEC.md §5 documents for it.
type badCase struct {
	name   string
	method string
	path   string
	token  string // "admin", "read", "write", "" (none) or a literal bad token
	body   any    // nil: no body; string or []byte: sent as is; else JSON
	header []string
	status int
	code   string
}

// TestBadInput walks every resource route with bad input: each answer is
// the documented 4xx with {"error","code"} and a message, never a 500, and
// nothing is written.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	src := gittest.Repo(t, map[string]string{".zeroci/pipeline.yaml": "jobs:\n  hello:\n    script: [echo hi]\n"})
	e.json("POST", "/api/v1/repos", map[string]any{"name": "app", "url": src}, 201, nil)
	e.json("POST", "/api/v1/repos/app/builds", nil, 201, nil)
	e.do("PUT", "/api/v1/repos/app/secrets/KEEP", e.admin, map[string]any{"value": "v"})
	resWaitBuild(t, e, "app", 1, "finished", func(b contracts.Build) bool { return b.Status.Terminal() })
	tokens := map[string]string{"admin": e.admin, "read": badToken(t, e, "reader", "read"), "write": badToken(t, e, "writer", "write")}
	before := badSnapshot(t, e)

	long := strings.Repeat("a", 64)
	huge := `{"name":"huge","url":"` + strings.Repeat("x", 1<<20) + `"}`
	const (
		repos = "/api/v1/repos"
		app   = repos + "/app"
		b1    = app + "/builds/1"
	)
	ok := map[string]any{"name": "newrepo", "url": src}
	cases := []badCase{
		// POST /api/v1/repos: bodies.
		{"repo unknown field", "POST", repos, "admin", map[string]any{"name": "x1", "url": src, "colour": "red"}, nil, 400, "invalid_argument"},
		{"repo name wrong type", "POST", repos, "admin", map[string]any{"name": 1, "url": src}, nil, 400, "invalid_argument"},
		{"repo poll wrong type", "POST", repos, "admin", map[string]any{"name": "x2", "url": src, "poll": "yes"}, nil, 400, "invalid_argument"},
		{"repo invalid name", "POST", repos, "admin", map[string]any{"name": "Bad_Name", "url": src}, nil, 400, "invalid_argument"},
		{"repo name too long", "POST", repos, "admin", map[string]any{"name": long, "url": src}, nil, 400, "invalid_argument"},
		{"repo name missing", "POST", repos, "admin", map[string]any{"url": src}, nil, 400, "invalid_argument"},
		{"repo url missing", "POST", repos, "admin", map[string]any{"name": "x3"}, nil, 400, "invalid_argument"},
		{"repo bad default branch", "POST", repos, "admin", map[string]any{"name": "x4", "url": src, "default_branch": "a..b"}, nil, 400, "invalid_argument"},
		{"repo empty body", "POST", repos, "admin", "", nil, 400, "invalid_argument"},
		{"repo trailing garbage", "POST", repos, "admin", `{"name":"x5","url":"` + src + `"} x`, nil, 400, "invalid_argument"},
		{"repo two objects", "POST", repos, "admin", `{"name":"x6","url":"` + src + `"}{}`, nil, 400, "invalid_argument"},
		{"repo malformed JSON", "POST", repos, "admin", `{"name":`, nil, 400, "invalid_argument"},
		{"repo array body", "POST", repos, "admin", `[]`, nil, 400, "invalid_argument"},
		{"repo null body", "POST", repos, "admin", `null`, nil, 400, "invalid_argument"},
		{"repo body over 1 MiB", "POST", repos, "admin", huge, nil, 413, "too_large"},
		{"repo wrong content type", "POST", repos, "admin", `{"name":"x7","url":"` + src + `"}`, []string{"Content-Type", "text/plain"}, 415, "invalid_argument"},
		{"repo name in use", "POST", repos, "admin", map[string]any{"name": "app", "url": src}, nil, 409, "conflict"},
		// Auth.
		{"repo create without token", "POST", repos, "", ok, nil, 401, "unauthenticated"},
		{"repo create with unknown token", "POST", repos, "zci_nope", ok, nil, 401, "unauthenticated"},
		{"repo create with basic auth", "POST", repos, "", ok, []string{"Authorization", "Basic YTpi"}, 401, "unauthenticated"},
		{"repo create with read token", "POST", repos, "read", ok, nil, 403, "permission_denied"},
		{"repo delete with read token", "DELETE", app, "read", nil, nil, 403, "permission_denied"},
		{"repo list without token", "GET", repos, "", nil, nil, 401, "unauthenticated"},
		// Repositories: query and path.
		{"repos limit 0", "GET", repos + "?limit=0", "read", nil, nil, 400, "invalid_argument"},
		{"repos limit not a number", "GET", repos + "?limit=abc", "read", nil, nil, 400, "invalid_argument"},
		{"repos limit too big", "GET", repos + "?limit=1001", "read", nil, nil, 400, "invalid_argument"},
		{"repos limit twice", "GET", repos + "?limit=1&limit=2", "read", nil, nil, 400, "invalid_argument"},
		{"repos bad after", "GET", repos + "?after=BAD", "read", nil, nil, 400, "invalid_argument"},
		{"repos malformed query", "GET", repos + "?limit=%zz", "read", nil, nil, 400, "invalid_argument"},
		{"repo path bad name", "GET", repos + "/Bad%20Name", "read", nil, nil, 400, "invalid_argument"},
		{"repo path name too long", "GET", repos + "/" + long, "read", nil, nil, 400, "invalid_argument"},
		{"repo unknown", "GET", repos + "/nope", "read", nil, nil, 404, "not_found"},
		{"repo delete unknown", "DELETE", repos + "/nope", "admin", nil, nil, 404, "not_found"},
		{"repo delete bad name", "DELETE", repos + "/-x", "admin", nil, nil, 400, "invalid_argument"},
		// Builds: trigger.
		{"trigger unknown field", "POST", app + "/builds", "write", map[string]any{"branch": "main"}, nil, 400, "invalid_argument"},
		{"trigger params wrong type", "POST", app + "/builds", "write", map[string]any{"params": map[string]any{"A": 1}}, nil, 400, "invalid_argument"},
		{"trigger params not an object", "POST", app + "/builds", "write", map[string]any{"params": []string{"A=1"}}, nil, 400, "invalid_argument"},
		{"trigger bad param name", "POST", app + "/builds", "write", map[string]any{"params": map[string]string{"1A": "x"}}, nil, 400, "invalid_argument"},
		{"trigger bad ref", "POST", app + "/builds", "write", map[string]any{"ref": "a..b"}, nil, 400, "invalid_argument"},
		{"trigger option-like ref", "POST", app + "/builds", "write", map[string]any{"ref": "-x"}, nil, 400, "invalid_argument"},
		{"trigger bad commit", "POST", app + "/builds", "write", map[string]any{"commit": "not-a-sha!"}, nil, 400, "invalid_argument"},
		{"trigger malformed", "POST", app + "/builds", "write", `{"ref":"main"`, nil, 400, "invalid_argument"},
		{"trigger unknown repo", "POST", repos + "/nope/builds", "write", map[string]any{}, nil, 404, "not_found"},
		{"trigger bad repo", "POST", repos + "/NOPE/builds", "write", map[string]any{}, nil, 400, "invalid_argument"},
		{"trigger with read token", "POST", app + "/builds", "read", map[string]any{}, nil, 403, "permission_denied"},
		// Builds: list and show.
		{"builds bad status", "GET", app + "/builds?status=done", "read", nil, nil, 400, "invalid_argument"},
		{"builds before 0", "GET", app + "/builds?before=0", "read", nil, nil, 400, "invalid_argument"},
		{"builds before negative", "GET", app + "/builds?before=-1", "read", nil, nil, 400, "invalid_argument"},
		{"builds before not a number", "GET", app + "/builds?before=1e3", "read", nil, nil, 400, "invalid_argument"},
		{"builds limit negative", "GET", app + "/builds?limit=-5", "read", nil, nil, 400, "invalid_argument"},
		{"builds unknown repo", "GET", repos + "/nope/builds", "read", nil, nil, 404, "not_found"},
		{"build number 0", "GET", app + "/builds/0", "read", nil, nil, 400, "invalid_argument"},
		{"build number text", "GET", app + "/builds/abc", "read", nil, nil, 400, "invalid_argument"},
		{"build number overflow", "GET", app + "/builds/99999999999999999999", "read", nil, nil, 400, "invalid_argument"},
		{"build number with sign", "GET", app + "/builds/+1", "read", nil, nil, 400, "invalid_argument"},
		{"build number with leading zero", "GET", app + "/builds/01", "read", nil, nil, 400, "invalid_argument"},
		{"build unknown", "GET", app + "/builds/999", "read", nil, nil, 404, "not_found"},
		// Cancel, retry, approve.
		{"cancel unknown build", "POST", app + "/builds/999/cancel", "write", nil, nil, 404, "not_found"},
		{"cancel with a body field", "POST", b1 + "/cancel", "write", map[string]any{"force": true}, nil, 400, "invalid_argument"},
		{"cancel with read token", "POST", b1 + "/cancel", "read", nil, nil, 403, "permission_denied"},
		{"retry negative number", "POST", app + "/builds/-1/retry", "write", nil, nil, 400, "invalid_argument"},
		{"retry unknown build", "POST", app + "/builds/999/retry", "write", nil, nil, 404, "not_found"},
		{"retry unknown repo", "POST", repos + "/nope/builds/1/retry", "write", nil, nil, 404, "not_found"},
		{"approve unknown job", "POST", b1 + "/jobs/nojob/approve", "write", nil, nil, 404, "not_found"},
		{"approve bad job id", "POST", b1 + "/jobs/bad%20job/approve", "write", nil, nil, 400, "invalid_argument"},
		{"approve job not blocked", "POST", b1 + "/jobs/hello/approve", "write", nil, nil, 409, "conflict"},
		{"approve unknown build", "POST", app + "/builds/999/jobs/hello/approve", "write", nil, nil, 404, "not_found"},
		{"approve trailing garbage", "POST", b1 + "/jobs/hello/approve", "write", `{} {}`, nil, 400, "invalid_argument"},
		// Artifacts.
		{"artifact absent", "GET", b1 + "/artifacts/none", "read", nil, nil, 404, "not_found"},
		{"artifact bad id", "GET", b1 + "/artifacts/bad%20id", "read", nil, nil, 400, "invalid_argument"},
		{"artifact unknown build", "GET", app + "/builds/999/artifacts/bin", "read", nil, nil, 404, "not_found"},
		{"artifact bad number", "GET", app + "/builds/x/artifacts/bin", "read", nil, nil, 400, "invalid_argument"},
		{"artifact without token", "GET", b1 + "/artifacts/bin", "", nil, nil, 401, "unauthenticated"},
		// Secrets.
		{"secret bad name", "PUT", app + "/secrets/1BAD", "write", map[string]any{"value": "x"}, nil, 400, "invalid_argument"},
		{"secret name with dash", "PUT", app + "/secrets/A-B", "write", map[string]any{"value": "x"}, nil, 400, "invalid_argument"},
		{"secret value missing", "PUT", app + "/secrets/GOOD", "write", map[string]any{}, nil, 400, "invalid_argument"},
		{"secret value empty", "PUT", app + "/secrets/GOOD", "write", map[string]any{"value": ""}, nil, 400, "invalid_argument"},
		{"secret value wrong type", "PUT", app + "/secrets/GOOD", "write", map[string]any{"value": 5}, nil, 400, "invalid_argument"},
		{"secret value control char", "PUT", app + "/secrets/GOOD", "write", map[string]any{"value": "a\x00b"}, nil, 400, "invalid_argument"},
		{"secret unknown field", "PUT", app + "/secrets/GOOD", "write", map[string]any{"value": "x", "masked": true}, nil, 400, "invalid_argument"},
		{"secret body over 1 MiB", "PUT", app + "/secrets/GOOD", "write", `{"value":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "too_large"},
		{"secret unknown repo", "PUT", repos + "/nope/secrets/GOOD", "write", map[string]any{"value": "x"}, nil, 404, "not_found"},
		{"secret with read token", "PUT", app + "/secrets/GOOD", "read", map[string]any{"value": "x"}, nil, 403, "permission_denied"},
		{"secrets unknown repo", "GET", repos + "/nope/secrets", "read", nil, nil, 404, "not_found"},
		{"secrets bad repo", "GET", repos + "/a%2Fb/secrets", "read", nil, nil, 400, "invalid_argument"},
		// Tokens.
		{"token bad scope", "POST", "/api/v1/tokens", "admin", map[string]any{"name": "t-scope", "scope": "root"}, nil, 400, "invalid_argument"},
		{"token bad name", "POST", "/api/v1/tokens", "admin", map[string]any{"name": "Bad Name", "scope": "read"}, nil, 400, "invalid_argument"},
		{"token name missing", "POST", "/api/v1/tokens", "admin", map[string]any{"scope": "read"}, nil, 400, "invalid_argument"},
		{"token unknown field", "POST", "/api/v1/tokens", "admin", map[string]any{"name": "t-field", "scope": "read", "expires": "1h"}, nil, 400, "invalid_argument"},
		{"token scope wrong type", "POST", "/api/v1/tokens", "admin", map[string]any{"name": "t-type", "scope": 3}, nil, 400, "invalid_argument"},
		{"token name in use", "POST", "/api/v1/tokens", "admin", map[string]any{"name": "admin", "scope": "read"}, nil, 409, "conflict"},
		{"token with write token", "POST", "/api/v1/tokens", "write", map[string]any{"name": "t-write", "scope": "admin"}, nil, 403, "permission_denied"},
		{"token without token", "POST", "/api/v1/tokens", "", map[string]any{"name": "t-none", "scope": "admin"}, nil, 401, "unauthenticated"},
		// Routes and methods.
		{"unknown route", "GET", "/api/v1/nope", "admin", nil, nil, 404, "not_found"},
		{"wrong method on repos", "PATCH", app, "admin", map[string]any{}, nil, 405, "method_not_allowed"},
		{"wrong method on tokens", "GET", "/api/v1/tokens", "admin", nil, nil, 405, "method_not_allowed"},
		{"wrong method on build", "DELETE", b1, "admin", nil, nil, 405, "method_not_allowed"},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token
			if v, ok := tokens[tok]; ok {
				tok = v
			}
			code, body := e.do(c.method, c.path, tok, c.body, c.header...)
			if code != c.status {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.status)
			}
			var eb struct {
				Error *string `json:"error"`
				Code  *string `json:"code"`
			}
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&eb); err != nil || eb.Error == nil || eb.Code == nil || *eb.Error == "" {
				t.Fatalf("%s %s: body %s is not {\"error\",\"code\"} with a message (%v)", c.method, c.path, body, err)
			}
			if c.code != "" && *eb.Code != c.code {
				t.Fatalf("%s %s: code %q (%s), want %q", c.method, c.path, *eb.Code, *eb.Error, c.code)
			}
		})
	}

	// Nothing was written: the same repositories, builds and secrets, and
	// the token names of the refused creates are free.
	if after := badSnapshot(t, e); after != before {
		t.Fatalf("bad requests changed the state:\nbefore %s\nafter  %s", before, after)
	}
	for _, name := range []string{"t-scope", "t-field", "t-type", "t-write", "t-none"} {
		e.json("POST", "/api/v1/tokens", map[string]any{"name": name, "scope": "read"}, 201, nil)
	}
}

// badToken creates a token with scope and returns it.
func badToken(t *testing.T, e *env, name, scope string) string {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	e.json("POST", "/api/v1/tokens", map[string]any{"name": name, "scope": scope}, 201, &tok)
	return tok.Token
}

// badSnapshot describes what a bad request must not change: repositories,
// the builds of app with their statuses, and app's secret names.
func badSnapshot(t *testing.T, e *env) string {
	t.Helper()
	var sb strings.Builder
	for _, p := range []string{"/api/v1/repos", "/api/v1/repos/app/secrets"} {
		code, body := e.do("GET", p, e.admin, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		sb.Write(bytes.TrimSpace(body))
		sb.WriteByte('\n')
	}
	var builds []contracts.Build
	e.json("GET", "/api/v1/repos/app/builds", nil, 200, &builds)
	for _, b := range builds {
		fmt.Fprintf(&sb, "%s#%d:%s ", b.Repo, b.Number, b.Status)
	}
	return sb.String()
}
