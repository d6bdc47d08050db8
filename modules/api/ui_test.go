package api_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// uiGet fetches path without a token and returns the response (body read).
func uiGet(t *testing.T, e *env, method, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// TestUIPage: "/" serves the page without a token, with a content
// security policy, and every asset it names exists.
func TestUIPage(t *testing.T) {
	e := newEnv(t)
	resp, body := uiGet(t, e, "GET", "/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET / content type %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("GET /: content security policy %q", csp)
	}
	if !strings.Contains(body, `<script type="module" src="/assets/app.js">`) {
		t.Errorf("GET /: the page does not load app.js:\n%s", body)
	}
	refs := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(refs) < 3 {
		t.Fatalf("GET /: want the script, stylesheet and icon, found %v", refs)
	}
	for _, m := range refs {
		if r, b := uiGet(t, e, "GET", m[1]); r.StatusCode != 200 {
			t.Errorf("GET %s (named by the page): %d %s", m[1], r.StatusCode, b)
		}
	}
	// Revalidation: the ETag answers 304.
	if etag := resp.Header.Get("ETag"); etag == "" {
		t.Error("GET /: no ETag")
	} else if r, _ := uiGet(t, e, "GET", "/", "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Errorf("GET / with its ETag: %d, want 304", r.StatusCode)
	}
	if r, _ := uiGet(t, e, "HEAD", "/"); r.StatusCode != 200 {
		t.Errorf("HEAD /: %d", r.StatusCode)
	}
	if r, b := uiGet(t, e, "POST", "/"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d %s, want 405", r.StatusCode, b)
	}
}

// TestUIAssets: every file of web/ is served under /assets/ with its
// bytes and the right content type, without a token.
func TestUIAssets(t *testing.T) {
	e := newEnv(t)
	types := map[string]string{
		".js":  "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8",
		".svg": "image/svg+xml",
	}
	files, err := os.ReadDir("web")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		ext := filepath.Ext(f.Name())
		want, ok := types[ext]
		if !ok || f.IsDir() {
			continue
		}
		seen[ext] = true
		data, err := os.ReadFile(filepath.Join("web", f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := uiGet(t, e, "GET", "/assets/"+f.Name())
		if resp.StatusCode != 200 || body != string(data) {
			t.Errorf("GET /assets/%s: %d, %d bytes, want 200 and the file's %d", f.Name(), resp.StatusCode, len(body), len(data))
		}
		if ct := resp.Header.Get("Content-Type"); ct != want {
			t.Errorf("GET /assets/%s: content type %q, want %q", f.Name(), ct, want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET /assets/%s: no nosniff", f.Name())
		}
	}
	for ext := range types {
		if !seen[ext] {
			t.Errorf("no %s file in web/", ext)
		}
	}
}

// TestUIUnknownAssets: paths that are not files of the UI are 404 with
// the API's error body, and tricks do not reach other files.
func TestUIUnknownAssets(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{
		"/assets/nope.js",
		"/assets/",
		"/assets/web/app.js",
		"/assets/%2e%2e/ui.go",
		"/assets/..%2fui.go",
		"/assets/app.js/",
		"/nope.html",
		"/ui.go",
	} {
		resp, body := uiGet(t, e, "GET", path)
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %d %q, want 404", path, resp.StatusCode, body)
			continue
		}
		if strings.HasPrefix(path, "/assets/") && !strings.Contains(body, `"code":"not_found"`) {
			t.Errorf("GET %s: body %q, want the API's error body", path, body)
		}
	}
	// The API itself still wants a token: the UI's routes open nothing else.
	if code, body := e.do("GET", "/api/v1/repos", "", nil); code != 401 {
		t.Errorf("GET /api/v1/repos without a token: %d %s", code, body)
	}
}

// TestUINoMarkupFromText guards the rule that server text is set as text:
// the scripts never assign innerHTML or outerHTML, nor call
// insertAdjacentHTML or document.write.
func TestUINoMarkupFromText(t *testing.T) {
	files, err := filepath.Glob("web/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	bad := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := bad.Find(data); m != nil {
			t.Errorf("%s uses %s", f, m)
		}
	}
}
