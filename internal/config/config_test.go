package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/zeroci/zeroci/modules"
)

var update = flag.Bool("update", false, "rewrite the .want golden files of testdata/bad")

// loadFile parses and validates a file the way the server does (no env).
func loadFile(t *testing.T, path string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(filepath.Base(path), data)
	if err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// TestBadConfigs checks every golden bad config: the error it gives, on one
// line, naming file:line and key, is the one in its .want file.
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := loadFile(t, f)
			if err == nil {
				t.Fatal("no error for a bad config")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			got := err.Error()
			if strings.Contains(got, "\n") {
				t.Errorf("error spans several lines: %q", got)
			}
			want := strings.TrimSuffix(f, ".yaml") + ".want"
			if *update {
				if err := os.WriteFile(want, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/config -update to create it)", err)
			}
			if w := strings.TrimSuffix(string(data), "\n"); got != w {
				t.Errorf("error\n got: %s\nwant: %s", got, w)
			}
		})
	}
}

func TestGoodConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	deploy, _ := filepath.Glob("../../deploy/*/*.yaml")
	if len(files) == 0 || len(deploy) == 0 {
		t.Fatalf("want good configs in testdata/good and deploy/: %v %v", files, deploy)
	}
	for _, f := range append(files, deploy...) {
		t.Run(f, func(t *testing.T) {
			if _, err := loadFile(t, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := loadFile(t, "testdata/good/empty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("empty file changed the defaults: %+v", c)
	}
	if !c.RunsAll() || !slices.Equal(c.LocalModules(), modules.Names()) {
		t.Errorf("default runs %v, want all", c.LocalModules())
	}
	if c.DataDir != "./zeroci-data" || c.HTTP.Addr != "127.0.0.1:8080" {
		t.Errorf("defaults of SPEC.md §2 changed: %q %q", c.DataDir, c.HTTP.Addr)
	}
}

func TestSpecExampleDecodes(t *testing.T) {
	c, err := loadFile(t, "testdata/good/spec_example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"eventhub": "tcp://hub.internal:7301", "datastore": "tcp://db.internal:7302",
		"blob": "ipc:///run/zeroci/blob.sock", "logging": "tcp://logs.internal:7304",
		"buildscript": "tcp://sched.internal:7305",
	}
	if got := c.Cluster.Endpoints.ByModule(); !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	if c.Jobs.Capacity != 4 || c.Jobs.Labels["arch"] != "amd64" || c.Datastore.Driver != DriverPostgres ||
		c.Blob.Auth != AuthInstancePrincipal || c.HTTP.Addr != ":8080" || c.DataDir != "/var/lib/zeroci" {
		t.Errorf("decoded %+v", c)
	}
	if c.RunsAll() || !slices.Equal(c.LocalModules(), []string{"jobs"}) {
		t.Errorf("local modules %v", c.LocalModules())
	}
	if got, want := c.Dependencies(), []string{"eventhub", "datastore", "blob", "logging", "buildscript", "jobs"}; !slices.Equal(got, want) {
		t.Errorf("dependencies %v, want %v", got, want)
	}
	if got := c.Origin("cluster.endpoints.blob"); got != "spec_example.yaml:8" {
		t.Errorf("origin %q", got)
	}
}

func TestEndpointsCoverEveryModule(t *testing.T) {
	var keys []string
	for _, k := range Keys() {
		if m, ok := strings.CutPrefix(k, "cluster.endpoints."); ok {
			keys = append(keys, m)
		}
	}
	if !slices.Equal(keys, modules.Names()) {
		t.Errorf("cluster.endpoints keys %v, want the module names in start order %v", keys, modules.Names())
	}
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		check   func(*Config) bool
		wantErr string
	}{
		{name: "scalars", env: []string{"ZEROCI_HTTP_ADDR=:9999", "ZEROCI_DATA_DIR=/srv/z", "ZEROCI_DATASTORE_DSN=postgres://x/y", "ZEROCI_JOBS_CAPACITY= 7 ", "ZEROCI_LOGGING_MAX_JOB_BYTES=5368709120", "ZEROCI_EVENTHUB_RETENTION=720h"},
			check: func(c *Config) bool {
				return c.HTTP.Addr == ":9999" && c.DataDir == "/srv/z" && c.Datastore.DSN == "postgres://x/y" && c.Jobs.Capacity == 7 &&
					c.Logging.MaxJobBytes == 5<<30 && c.Eventhub.Retention == "720h"
			}},
		{name: "nested endpoint and secret", env: []string{"ZEROCI_CLUSTER_ENDPOINTS_EVENTHUB=tcp://h:1", "ZEROCI_CLUSTER_SECRET_FILE=/k"},
			check: func(c *Config) bool {
				return c.Cluster.Endpoints.Eventhub == "tcp://h:1" && c.Cluster.SecretFile == "/k"
			}},
		{name: "list", env: []string{"ZEROCI_MODULES=api, jobs,,"},
			check: func(c *Config) bool { return slices.Equal(c.Modules, []string{"api", "jobs"}) }},
		{name: "map", env: []string{"ZEROCI_JOBS_LABELS=arch=amd64, os = linux"},
			check: func(c *Config) bool {
				return reflect.DeepEqual(c.Jobs.Labels, map[string]string{"arch": "amd64", "os": "linux"})
			}},
		{name: "empty means unset and other ZEROCI_ variables are not config",
			env:   []string{"ZEROCI_HTTP_ADDR=", "ZEROCI_SERVER=http://x", "ZEROCI_TOKEN=t", "ZEROCI_JOB=build", "HOME=/root"},
			check: func(c *Config) bool { return reflect.DeepEqual(c, Default()) }},
		{name: "typo in a section", env: []string{"ZEROCI_HTTP_ADR=:1"},
			wantErr: "config: $ZEROCI_HTTP_ADR: unknown setting (known in this section: ZEROCI_HTTP_ADDR)"},
		{name: "not a number", env: []string{"ZEROCI_JOBS_CAPACITY=many"},
			wantErr: `config: $ZEROCI_JOBS_CAPACITY: jobs.capacity: "many" is not a whole number`},
		{name: "bad pair", env: []string{"ZEROCI_JOBS_LABELS=arch"},
			wantErr: `config: $ZEROCI_JOBS_LABELS: jobs.labels: "arch" is not a k=v pair (want k=v,k2=v2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := c.ApplyEnv(tt.env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config after env: %+v", c)
			}
		})
	}
}

// TestEveryKeyIsSettable sets every key through its environment variable,
// so a key added later cannot lack an override.
func TestEveryKeyIsSettable(t *testing.T) {
	for _, k := range Keys() {
		c := Default()
		name := EnvName(k)
		// "7=7" is a string, a one-item list and a one-pair map; "7" an
		// int; "true" a boolean.
		if err := c.ApplyEnv([]string{name + "=7=7"}); err != nil {
			if err := c.ApplyEnv([]string{name + "=7"}); err != nil {
				if err := c.ApplyEnv([]string{name + "=true"}); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
		if got := c.Origin(k); got != "$"+name {
			t.Errorf("%s: origin %q", k, got)
		}
		if reflect.DeepEqual(c, Default()) {
			t.Errorf("%s changed nothing", name)
		}
	}
}

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "z.yaml")
	if err := os.WriteFile(path, []byte("http: {addr: \"127.0.0.1:1\"}\njobs: {capacity: 3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{"ZEROCI_HTTP_ADDR=127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != "127.0.0.1:2" || c.Jobs.Capacity != 3 {
		t.Fatalf("env must override the file: %+v", c)
	}
	if err := c.Set("http.addr", "nonsense", "--http"); err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if want := `config: --http: http.addr: "nonsense" is not HOST:PORT (e.g. 127.0.0.1:8080 or :8080)`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load("/dev/zero", nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "over 1048576 bytes") {
		t.Errorf("endless file: %v", err)
	}
}

func TestSetErrors(t *testing.T) {
	for _, key := range []string{"nope", "http.nope", "http", "http.addr.x"} {
		if err := Default().Set(key, "1", "test"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Set(%q) = %v, want ErrInvalid", key, err)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	long := "ipc:///" + strings.Repeat("x", MaxIPCPath-1)
	tests := []struct {
		in       string
		loopback bool
		wantErr  string
	}{
		{in: "tcp://127.0.0.1:7301", loopback: true},
		{in: "tcp://127.8.9.1:7301", loopback: true},
		{in: "tcp://[::1]:7301", loopback: true},
		{in: "tcp://LocalHost:7301", loopback: true},
		{in: "tcp://0.0.0.0:7301"},
		{in: "tcp://*:7301"},
		{in: "tcp://hub.internal:7301"},
		{in: "tcp://[::]:7301"},
		{in: "ipc:///run/zeroci/blob.sock", loopback: true},
		{in: long, loopback: true},
		{in: long + "x", wantErr: "108 bytes, over the 107"},
		{in: "inproc://hub", loopback: true},
		{in: "tcp://:7301", wantErr: "missing host"},
		{in: "tcp://h:0", wantErr: "port must be"},
		{in: "tcp://h:99999", wantErr: "port must be"},
		{in: "tcp://h", wantErr: "want tcp://HOST:PORT"},
		{in: "ipc://", wantErr: "missing socket path"},
		{in: "ipc://run/b.sock", wantErr: "must be absolute"},
		{in: "inproc://", wantErr: "missing name"},
		{in: "ws://h:1", wantErr: `scheme "ws" is not supported`},
		{in: "h:1", wantErr: "is not an endpoint"},
		{in: "ipc:///a\x00b", wantErr: "NUL"},
	}
	for _, tt := range tests {
		e, err := ParseEndpoint(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseEndpoint(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseEndpoint(%q): %v", tt.in, err)
			continue
		}
		if e.Loopback() != tt.loopback {
			t.Errorf("ParseEndpoint(%q).Loopback() = %v", tt.in, e.Loopback())
		}
	}
}
