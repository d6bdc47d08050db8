package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules/moduletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a whole zeroci server in this process (every module, in-process
// transport, HTTP on a free loopback port) and its admin token.
type env struct {
	t     testing.TB
	srv   *server.Server
	base  string // http://127.0.0.1:PORT
	admin string // the admin token
	dir   string // the data directory
}

// newEnv starts a server; mutate adjusts the configuration first.
func newEnv(t testing.TB, mutate ...func(*config.Config)) *env {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Buildscript.AllowLocal = true
	for _, m := range mutate {
		m(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, cfg, moduletest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, base: "http://" + srv.HTTPAddr().String(), admin: strings.TrimSpace(string(tok)), dir: cfg.DataDir}
}

// do sends a request with token (none if empty) and returns the status and
// body.
func (e *env) do(method, path, token string, body any, header ...string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// json sends a request as the admin and decodes a JSON answer into out,
// failing unless the status is want.
func (e *env) json(method, path string, body any, want int, out any) {
	e.t.Helper()
	code, data := e.do(method, path, e.admin, body)
	if code != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, code, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

// TestAdminToken: the first start writes an admin token (0600) that works;
// no token is 401.
func TestAdminToken(t *testing.T) {
	e := newEnv(t)
	info, err := os.Stat(filepath.Join(e.dir, "admin.token"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", info, err)
	}
	if code, body := e.do("GET", "/api/v1/repos", "", nil); code != 401 || !strings.Contains(string(body), `"code":"unauthenticated"`) {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, body := e.do("GET", "/api/v1/repos", "zci_wrong", nil); code != 401 {
		t.Fatalf("a wrong token: %d %s", code, body)
	}
	if code, body := e.do("GET", "/api/v1/nope", e.admin, nil); code != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Fatalf("unknown route: %d %s", code, body)
	}
}
