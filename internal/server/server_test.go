package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRegistryMatchesModuleNames(t *testing.T) {
	var names []string
	for _, e := range registry() {
		names = append(names, e.name)
		if got := e.new(config.Default()).Name(); got != e.name {
			t.Errorf("registry entry %s builds a module named %s", e.name, got)
		}
		if e.summary == "" {
			t.Errorf("%s has no summary", e.name)
		}
	}
	if !slices.Equal(names, modules.Names()) {
		t.Errorf("registry order %v, want %v", names, modules.Names())
	}
	if got := build(config.Default(), []string{"api", "eventhub"}); len(got) != 2 || got[0].Name() != "eventhub" || got[1].Name() != "api" {
		t.Errorf("build must return start order, got %v", got)
	}
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.HTTP.Addr = "127.0.0.1:0"
	return c
}

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &body); err != nil {
		t.Fatalf("GET %s: %d %q is not JSON: %v", url, resp.StatusCode, data, err)
	}
	return resp.StatusCode, body
}

func TestStartServeShutdown(t *testing.T) {
	cfg := testConfig(t)
	s, err := Start(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(cfg.DataDir); err != nil || !info.IsDir() || info.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v %v", info, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, config.KeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an all-in-one server made a cluster key: %v", err)
	}
	base := "http://" + s.HTTPAddr().String()
	if code, body := get(t, base+"/healthz"); code != 200 || body["status"] != "ok" {
		t.Errorf("/healthz: %d %v", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || body["status"] != "ready" {
		t.Errorf("/readyz: %d %v", code, body)
	}
	resp, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("HTTP still answers after Shutdown")
	}
}

// TestRunStopsOnCancel: Run returns nil when its context ends (a signal).
func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, testConfig(t), zerolog.New(w))
		w.Close()
	}()
	// The "zeroci server started" line means every module is up.
	dec := json.NewDecoder(r)
	for {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatalf("log ended before the server started: %v", err)
		}
		if line["message"] == "zeroci server started" {
			break
		}
	}
	cancel()
	go io.Copy(io.Discard, r)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestRunCancelledDuringStart: a signal during start-up is a clean stop,
// and what start-up acquired is released.
func TestRunCancelledDuringStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := testConfig(t)
	cfg.HTTP.Addr = addr
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, cfg, zerolog.Nop()); err != nil {
		t.Fatalf("Run: %v, want nil", err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("HTTP listener not released: %v", err)
	}
	ln.Close()
}

func TestStartFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		change  func(*config.Config)
		invalid bool
		want    string
	}{
		{name: "invalid config", change: func(c *config.Config) { c.Modules = []string{"bogus"} }, invalid: true,
			want: `unknown module "bogus"`},
		{name: "missing secret file", invalid: true, change: func(c *config.Config) {
			c.Modules = []string{"jobs"}
			c.Cluster.SecretFile = filepath.Join(c.DataDir, "nope")
			c.Cluster.Endpoints = config.Endpoints{Eventhub: "tcp://127.0.0.1:1", Datastore: "tcp://127.0.0.1:2",
				Blob: "tcp://127.0.0.1:3", Logging: "tcp://127.0.0.1:4", Buildscript: "tcp://127.0.0.1:5"}
		}, want: "does not exist"},
		{name: "endpoint the transport refuses", invalid: true, change: func(c *config.Config) {
			c.Modules = []string{"jobs"}
			c.Cluster.Endpoints = config.Endpoints{Eventhub: "ipc:///tmp/zci%zz", Datastore: "tcp://127.0.0.1:2",
				Blob: "tcp://127.0.0.1:3", Logging: "tcp://127.0.0.1:4", Buildscript: "tcp://127.0.0.1:5"}
		}, want: `cluster.endpoints.eventhub: zmq: endpoint "ipc:///tmp/zci%zz"`},
		{name: "http port busy", change: func(c *config.Config) { c.HTTP.Addr = busy.Addr().String() },
			want: "server: http: listen tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.change(cfg)
			s, err := Start(context.Background(), cfg, zerolog.Nop())
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatal("Start succeeded")
			}
			if errors.Is(err, config.ErrInvalid) != tt.invalid || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v (invalid=%v), want %q", err, errors.Is(err, config.ErrInvalid), tt.want)
			}
		})
	}
}

// TestReadyzNamesFailedModules serves two of three health services and
// checks /readyz's 503.
func TestReadyzNamesFailedModules(t *testing.T) {
	tr := inproc.NewNetwork().Node()
	defer tr.Close()
	for _, m := range []string{"eventhub", "logging"} {
		svc, err := tr.Serve(modules.HealthService(m), func(context.Context, []byte) ([]byte, error) { return nil, nil })
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
	}
	failing, err := tr.Serve(modules.HealthService("blob"), func(context.Context, []byte) ([]byte, error) {
		return nil, errors.New("disk gone")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer failing.Close()
	s := &Server{tr: tr, deps: []string{"eventhub", "datastore", "blob", "logging"}}
	rec := httptest.NewRecorder()
	s.routes().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", rec.Code)
	}
	var body readyzBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Status != "not_ready" || body.Code != "not_ready" || body.Error != "modules not ready: datastore, blob" {
		t.Errorf("body %+v", body)
	}
	if !strings.Contains(body.Modules["datastore"], "no responder") || !strings.Contains(body.Modules["blob"], "disk gone") || len(body.Modules) != 2 {
		t.Errorf("modules %v", body.Modules)
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("content type %q", rec.Header().Get("Content-Type"))
	}
}

func TestZMQWiring(t *testing.T) {
	eps := config.Endpoints{Eventhub: "ipc:///tmp/z/e", Datastore: "ipc:///tmp/z/d", Blob: "tcp://127.0.0.1:7303",
		Logging: "ipc:///tmp/z/l", Buildscript: "ipc:///tmp/z/b"}
	routes := map[string]string{"*": eps.Eventhub, "eventhub": eps.Eventhub, "datastore": eps.Datastore,
		"blob": eps.Blob, "logging": eps.Logging, "buildscript": eps.Buildscript}
	tests := []struct {
		modules []string
		bind    []string
	}{
		{modules: []string{"api", "jobs"}},
		{modules: []string{"buildscript", "eventhub"}, bind: []string{eps.Eventhub, eps.Buildscript}},
		{modules: []string{"eventhub", "datastore", "blob", "logging", "buildscript"},
			bind: []string{eps.Eventhub, eps.Datastore, eps.Blob, eps.Logging, eps.Buildscript}},
	}
	for _, tt := range tests {
		c := config.Default()
		c.Modules = tt.modules
		c.Cluster.Endpoints = eps
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		zc := zmqConfig(c, []byte("k"), zerolog.Nop())
		if !slices.Equal(zc.Bind, tt.bind) || !reflect.DeepEqual(zc.Routes, routes) || zc.Bus != eps.Eventhub || string(zc.Key) != "k" {
			t.Errorf("%v: %+v", tt.modules, zc)
		}
	}
}

// TestSplitInOneProcess runs a split deployment as two servers in this test
// process over ipc: the one without the hub is ready only while the hub
// runs.
func TestSplitInOneProcess(t *testing.T) {
	sock, err := os.MkdirTemp("", "zci")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sock)
	data := filepath.Join(t.TempDir(), "data")
	cfgFor := func(mods ...string) *config.Config {
		c := config.Default()
		c.Modules = mods
		c.DataDir = data
		c.HTTP.Addr = "127.0.0.1:0"
		c.Cluster.Endpoints = config.Endpoints{Eventhub: "ipc://" + sock + "/e", Datastore: "ipc://" + sock + "/d",
			Blob: "ipc://" + sock + "/b", Logging: "ipc://" + sock + "/l", Buildscript: "ipc://" + sock + "/s"}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hub, err := Start(ctx, cfgFor("eventhub", "datastore", "blob", "logging", "buildscript"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runner, err := Start(ctx, cfgFor("jobs", "api"), zerolog.Nop())
	if err != nil {
		hub.Shutdown(ctx)
		t.Fatal(err)
	}
	url := "http://" + runner.HTTPAddr().String() + "/readyz"
	waitStatus := func(want int) {
		t.Helper()
		var last map[string]any
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			code, body := get(t, url)
			if code == want {
				return
			}
			last = body
			<-tick.C
		}
		t.Fatalf("/readyz never answered %d; last %v", want, last)
	}
	waitStatus(200)
	if err := hub.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	waitStatus(503)
	if err := runner.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(data, config.KeyFileName)); err != nil {
		t.Errorf("split servers did not share a data-dir key: %v", err)
	}
}
