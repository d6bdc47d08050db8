package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The modules of the two processes of the split tests.
const (
	hubModules    = "eventhub,datastore,blob,logging,buildscript"
	runnerModules = "api,jobs"
)

func TestSplitIPC(t *testing.T) {
	sock, err := os.MkdirTemp("", "zci") // short: a socket path has 107 bytes at most
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	eps := map[string]string{}
	for _, m := range strings.Split(hubModules, ",") {
		eps[m] = "ipc://" + filepath.Join(sock, m+".sock")
	}
	splitDeployment(t, eps)
}

func TestSplitTCP(t *testing.T) {
	eps := map[string]string{}
	for _, m := range strings.Split(hubModules, ",") {
		eps[m] = "tcp://" + freeAddr(t)
	}
	splitDeployment(t, eps)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// splitDeployment runs a deployment of two processes sharing a data
// directory (and so its cluster key): a hub with the once-per-deployment
// modules bound at eps, and a runner with api and jobs. The runner is ready
// only while the hub runs, across a hub crash and restart.
func splitDeployment(t *testing.T, eps map[string]string) {
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("data_dir: data\ncluster:\n  endpoints:\n")
	for m, ep := range eps {
		fmt.Fprintf(&cfg, "    %s: %s\n", m, ep)
	}
	if err := os.WriteFile(filepath.Join(dir, "split.yaml"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	env := cleanEnv()
	t0 := time.Now()
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	startHub := func(name string) *proc {
		return start(t, name, dir, env, "server", "--config", "split.yaml", "--modules", hubModules, "--http", "127.0.0.1:0")
	}

	runner := start(t, "runner", dir, env, "server", "--config", "split.yaml", "--modules", runnerModules, "--http", "127.0.0.1:0")
	// /readyz answers from the start, while the runner's modules may still be
	// registering with a hub that is not there.
	ready := runner.httpBase() + "/readyz"
	code, body, err := getJSON(ready)
	if err != nil || code != 503 || body["status"] != "not_ready" {
		t.Fatalf("runner /readyz with no hub: %d %v %v; want 503", code, body, err)
	}
	if mods, _ := body["modules"].(map[string]any); mods["eventhub"] == nil {
		t.Errorf("503 does not name eventhub: %v", body)
	}

	step("runner answers 503 without a hub")

	hub := startHub("hub")
	hubReady := hub.httpBase() + "/readyz"
	waitStatus(t, hubReady, 200, 30*time.Second)
	step("hub ready")
	waitStatus(t, ready, 200, 30*time.Second)
	step("runner ready")

	if err := hub.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := hub.wait(10 * time.Second); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("hub exit code %d after SIGKILL", code)
	}
	step("hub killed")
	body = waitStatus(t, ready, 503, 30*time.Second)
	step("runner not ready")
	if mods, _ := body["modules"].(map[string]any); mods["eventhub"] == nil {
		t.Errorf("503 after the hub died does not name eventhub: %v", body)
	}

	hub2 := startHub("hub (restarted)")
	waitStatus(t, hub2.httpBase()+"/readyz", 200, 30*time.Second)
	step("restarted hub ready")
	waitStatus(t, ready, 200, 30*time.Second)
	step("runner ready again")

	for _, p := range []*proc{runner, hub2} {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range []*proc{runner, hub2} {
		if code := p.wait(30 * time.Second); code != 0 {
			t.Errorf("%s exit code %d after SIGTERM, want 0", p.name, code)
		}
	}
	step("both stopped")
	if info, err := os.Stat(filepath.Join(dir, "data", "cluster.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("shared cluster key: %v %v", info, err)
	}
}
