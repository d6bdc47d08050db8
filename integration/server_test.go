package integration

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDefaultServer: with no configuration the server runs every module,
// answers /healthz at once and /readyz once the modules started, creates
// its data directory, and exits 0 on SIGTERM or SIGINT.
func TestDefaultServer(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			p := start(t, "server", dir, cleanEnv(), "server", "--http", "127.0.0.1:0")
			base := p.httpBase()
			code, body, err := getJSON(base + "/healthz")
			if err != nil || code != 200 || body["status"] != "ok" {
				t.Fatalf("/healthz: %d %v %v", code, body, err)
			}
			if body := waitStatus(t, base+"/readyz", 200, 30*time.Second); body["status"] != "ready" {
				t.Errorf("/readyz body %v", body)
			}
			if info, err := os.Stat(filepath.Join(dir, "zeroci-data")); err != nil || !info.IsDir() {
				t.Errorf("default data dir ./zeroci-data: %v", err)
			}
			p.signal(sig)
			if code := p.wait(30 * time.Second); code != 0 {
				t.Fatalf("exit code %d after %s, want 0", code, sig)
			}
			lines := p.stderr()
			for _, l := range lines {
				if !json.Valid([]byte(l)) {
					t.Errorf("stderr is not a terminal, yet a log line is not JSON: %s", l)
				}
			}
			if last := lines[len(lines)-1]; !strings.Contains(last, `"message":"zeroci server stopped"`) {
				t.Errorf("last log line %s", last)
			}
			all := strings.Join(lines, "\n")
			for _, msg := range []string{"event hub started", "data store started", "blob store started", "logging started", "runner started", "runner stopped"} {
				if !strings.Contains(all, `"message":"`+msg+`"`) {
					t.Errorf("no %q log line", msg)
				}
			}
			for _, f := range []string{"eventhub/log", "datastore/zeroci.db", "datastore/secrets.key"} {
				if _, err := os.Stat(filepath.Join(dir, "zeroci-data", f)); err != nil {
					t.Errorf("data dir: %v", err)
				}
			}
		})
	}
}

// TestBadStart: a bad command line or configuration exits 2 at once with
// one line on stderr, and leaves nothing behind.
func TestBadStart(t *testing.T) {
	loopback := `
    datastore: tcp://127.0.0.1:7302
    blob: tcp://127.0.0.1:7303
    logging: tcp://127.0.0.1:7304
    buildscript: tcp://127.0.0.1:7305
`
	tests := []struct {
		name    string
		args    []string
		config  string // written to zeroci.yaml and passed with --config
		env     []string
		keyMode os.FileMode // when set, a key file "key" with this mode is written
		want    string
	}{
		{name: "unknown module", args: []string{"--modules", "bogus"},
			want: `zeroci: config: --modules: modules: unknown module "bogus" (known: eventhub, datastore, blob, logging, buildscript, jobs, api, or all)`},
		{name: "bad endpoint scheme", config: "modules: [api]\ncluster:\n  endpoints:\n    eventhub: http://hub:7301" + loopback,
			want: `zeroci: config: zeroci.yaml:4: cluster.endpoints.eventhub: scheme "http" is not supported (want tcp://, ipc:// or inproc://)`},
		{name: "ipc path too long", config: "modules: [api]\ncluster:\n  endpoints:\n    eventhub: ipc:///" + strings.Repeat("d", 120) + loopback,
			want: "cluster.endpoints.eventhub: ipc socket path is 121 bytes, over the 107 a Unix socket allows"},
		{name: "endpoint the transport refuses", config: "modules: [api]\ncluster:\n  endpoints:\n    eventhub: ipc:///tmp/zci%zz" + loopback,
			want: `zeroci: config: zeroci.yaml:4: cluster.endpoints.eventhub: zmq: endpoint "ipc:///tmp/zci%zz": parse`},
		{name: "missing endpoint", config: "modules: [jobs]\ncluster:\n  endpoints:" + loopback,
			want: "zeroci: config: zeroci.yaml:3: cluster.endpoints.eventhub: required: this process does not run eventhub, so it must know where to reach it"},
		{name: "non-loopback bind without secret file", config: "modules: [eventhub]\ncluster:\n  endpoints:\n    eventhub: tcp://0.0.0.0:7301" + loopback,
			want: "zeroci: config: zeroci.yaml:4: cluster.secret_file is required to bind tcp://0.0.0.0:7301 (not loopback)"},
		{name: "secret file missing", config: "modules: [jobs]\ncluster:\n  secret_file: /nonexistent/cluster.key\n  endpoints:\n    eventhub: tcp://127.0.0.1:7301" + loopback,
			want: "zeroci: config: zeroci.yaml:3: cluster.secret_file: /nonexistent/cluster.key does not exist"},
		{name: "secret file readable by others", config: "modules: [jobs]\ncluster:\n  secret_file: key\n  endpoints:\n    eventhub: tcp://127.0.0.1:7301" + loopback,
			keyMode: 0o644, want: "key is accessible by group or others (mode 0644); run: chmod 600 key"},
		{name: "unknown config key", config: "http:\n  adr: :8080\n",
			want: "zeroci: config: zeroci.yaml:2: http.adr: unknown key (known here: addr)"},
		{name: "missing config file", args: []string{"--config", "nope.yaml"},
			want: "zeroci: config: invalid: open nope.yaml: no such file or directory"},
		{name: "env typo", env: []string{"ZEROCI_HTTP_ADR=:1"},
			want: "zeroci: config: $ZEROCI_HTTP_ADR: unknown setting (known in this section: ZEROCI_HTTP_ADDR)"},
		{name: "bad env value", env: []string{"ZEROCI_JOBS_EXECUTOR=docker"},
			want: `zeroci: config: $ZEROCI_JOBS_EXECUTOR: jobs.executor: "docker" is not an executor (want shell or container)`},
		{name: "bad http flag", args: []string{"--http", "nonsense"},
			want: `zeroci: config: --http: http.addr: "nonsense" is not HOST:PORT`},
		{name: "unknown flag", args: []string{"--bogus"},
			want: "zeroci: unknown flag: --bogus (see 'zeroci server --help')"},
		{name: "extra argument", args: []string{"extra"},
			want: `zeroci: unknown command "extra" for "zeroci server" (see 'zeroci server --help')`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"server", "--http", "127.0.0.1:0"}, tt.args...)
			if tt.config != "" {
				if err := os.WriteFile(filepath.Join(dir, "zeroci.yaml"), []byte(tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", "zeroci.yaml")
			}
			if tt.keyMode != 0 {
				key := filepath.Join(dir, "key")
				if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)), tt.keyMode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(key, tt.keyMode); err != nil {
					t.Fatal(err)
				}
			}
			p := start(t, "server", dir, cleanEnv(tt.env...), args...)
			if code := p.wait(30 * time.Second); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			lines := p.stderr()
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "zeroci: ") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr %q, want one line containing %q", lines, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "zeroci-data")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("data dir created by a refused start: %v", err)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	p := start(t, "zeroci", t.TempDir(), cleanEnv(), "zzz")
	if code := p.wait(30 * time.Second); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if lines := p.stderr(); len(lines) != 1 || lines[0] != `zeroci: unknown command "zzz" for "zeroci" (see 'zeroci --help')` {
		t.Errorf("stderr %q", lines)
	}
	p = start(t, "zeroci", t.TempDir(), cleanEnv(), "bulid")
	if code := p.wait(30 * time.Second); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if lines := p.stderr(); len(lines) != 1 || lines[0] != `zeroci: unknown command "bulid" for "zeroci" (did you mean build?) (see 'zeroci --help')` {
		t.Errorf("stderr %q", lines)
	}
}

// TestHTTPPortBusy: a failure after start-up began exits 1, with the error
// as the last line.
func TestHTTPPortBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := start(t, "server", t.TempDir(), cleanEnv(), "server", "--http", ln.Addr().String())
	if code := p.wait(30 * time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	lines := p.stderr()
	if len(lines) == 0 {
		t.Fatal("nothing on stderr")
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "zeroci: server: http: listen tcp "+ln.Addr().String()) ||
		!strings.Contains(last, "address already in use") {
		t.Errorf("last stderr line %q", last)
	}
}

func TestHelpAndVersion(t *testing.T) {
	out, err := exec.Command(binary, "server", "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	help := string(out)
	for _, want := range []string{
		"zeroci server [--config FILE] [--modules LIST] [--data-dir DIR] [--http ADDR]\n",
		"eventhub     durable, numbered event log and live event fan-out\n",
		"datastore    repos, builds, jobs, secrets and tokens, projected from the event log\n",
		"buildscript  scheduler: plans builds from pipeline files and hands their jobs to runners\n",
		"api          HTTP API, webhooks and web UI\n",
		`(default "./zeroci-data")`, `(default "127.0.0.1:8080")`, `(default "all")`,
	} {
		if !strings.Contains(help, want) {
			t.Errorf("server --help lacks %q:\n%s", want, help)
		}
	}
	out, err = exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "zeroci ") {
		t.Errorf("version: %q %v", out, err)
	}
}
