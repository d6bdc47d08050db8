package config

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// splitConfig is a valid config of a process that runs only jobs and
// reaches the others at eps (eventhub, datastore, blob, logging,
// buildscript).
func splitConfig(t *testing.T, local string, eps ...string) *Config {
	t.Helper()
	c := Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.Modules = []string{local}
	c.Cluster.Endpoints = Endpoints{Eventhub: eps[0], Datastore: eps[1], Blob: eps[2], Logging: eps[3], Buildscript: eps[4]}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func loopbackEndpoints() []string {
	return []string{"tcp://127.0.0.1:7301", "ipc:///tmp/zci-d.sock", "tcp://localhost:7303", "tcp://[::1]:7304", "ipc:///tmp/zci-b.sock"}
}

func writeKey(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	return path
}

func TestClusterKeyAllInProcess(t *testing.T) {
	c := Default()
	c.DataDir = t.TempDir()
	k, err := c.ClusterKey()
	if err != nil || k != nil {
		t.Fatalf("ClusterKey() = %x, %v; want none in one process", k, err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, KeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file was created for an in-process server: %v", err)
	}
}

func TestClusterKeySecretFile(t *testing.T) {
	good := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		want    []byte
		wantErr string
	}{
		{name: "hex with newline", path: func(t *testing.T) string { return writeKey(t, good+"\n", 0o600) },
			want: bytes.Repeat([]byte{0xab}, 32)},
		{name: "longer key, read-only", path: func(t *testing.T) string { return writeKey(t, "  "+good+"cd\n", 0o400) },
			want: append(bytes.Repeat([]byte{0xab}, 32), 0xcd)},
		{name: "missing", path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.key") },
			wantErr: "nope.key does not exist (create one with: openssl rand -hex 32"},
		{name: "group readable", path: func(t *testing.T) string { return writeKey(t, good, 0o640) },
			wantErr: "is accessible by group or others (mode 0640); run: chmod 600"},
		{name: "world readable", path: func(t *testing.T) string { return writeKey(t, good, 0o604) },
			wantErr: "(mode 0604)"},
		{name: "short", path: func(t *testing.T) string { return writeKey(t, good[:62], 0o600) },
			wantErr: "holds 31 bytes of key, want at least 32 (64 hex digits)"},
		{name: "empty", path: func(t *testing.T) string { return writeKey(t, "", 0o600) },
			wantErr: "holds 0 bytes of key"},
		{name: "not hex", path: func(t *testing.T) string { return writeKey(t, strings.Repeat("zz", 32), 0o600) },
			wantErr: "must hold the key as hex digits"},
		{name: "huge", path: func(t *testing.T) string { return writeKey(t, strings.Repeat("a", 5000), 0o600) },
			wantErr: "is over 4096 bytes"},
		{name: "directory", path: func(t *testing.T) string { return t.TempDir() }, wantErr: "is not a regular file"},
		{name: "fifo, refused without blocking", path: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Skipf("no FIFOs here: %v", err)
			}
			return p
		}, wantErr: "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := splitConfig(t, "jobs", loopbackEndpoints()...)
			c.Cluster.SecretFile = tt.path(t)
			k, err := c.ClusterKey()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v, want ErrInvalid with %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "cluster.secret_file: ") {
					t.Errorf("error does not name the setting: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k, tt.want) {
				t.Errorf("key %x, want %x", k, tt.want)
			}
		})
	}
}

func TestClusterKeyRequiresSecretFileBeyondLoopback(t *testing.T) {
	tests := []struct {
		name  string
		local string
		eps   []string
		want  string
	}{
		{name: "bind", local: "eventhub",
			eps:  []string{"tcp://0.0.0.0:7301", "tcp://127.0.0.1:7302", "tcp://127.0.0.1:7303", "tcp://127.0.0.1:7304", "tcp://127.0.0.1:7305"},
			want: "config: cluster.secret_file is required to bind tcp://0.0.0.0:7301 (not loopback)"},
		{name: "reach", local: "jobs",
			eps:  []string{"ipc:///tmp/zci-e.sock", "tcp://db.internal:7302", "tcp://127.0.0.1:7303", "tcp://127.0.0.1:7304", "tcp://127.0.0.1:7305"},
			want: "config: cluster.secret_file is required to reach tcp://db.internal:7302 (not loopback)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := splitConfig(t, tt.local, tt.eps...)
			_, err := c.ClusterKey()
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
			if _, err := os.Stat(c.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("data dir created on a refused start: %v", err)
			}
		})
	}
}

func TestClusterKeyCreatedInDataDir(t *testing.T) {
	c := splitConfig(t, "jobs", loopbackEndpoints()...)
	k1, err := c.ClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != MinKeyBytes || bytes.Equal(k1, make([]byte, MinKeyBytes)) {
		t.Fatalf("key %x", k1)
	}
	path := filepath.Join(c.DataDir, KeyFileName)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if strings.TrimSpace(string(data)) != hex.EncodeToString(k1) {
		t.Errorf("key file holds %q, want the key in hex", data)
	}
	k2, err := c.ClusterKey()
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second start got key %x, %v; want the same key", k2, err)
	}
	entries, _ := os.ReadDir(c.DataDir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only %s", len(entries), KeyFileName)
	}
}

// TestClusterKeyConcurrentCreation: processes that start together on one
// data dir end up with one key.
func TestClusterKeyConcurrentCreation(t *testing.T) {
	c := splitConfig(t, "jobs", loopbackEndpoints()...)
	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = c.ClusterKey()
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("creator %d got key %x, creator 0 got %x", i, keys[i], keys[0])
		}
	}
}

func TestClusterKeyRefusesLooseDataDirKey(t *testing.T) {
	c := splitConfig(t, "jobs", loopbackEndpoints()...)
	if _, err := c.ClusterKey(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.DataDir, KeyFileName)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ClusterKey(); err == nil || !strings.Contains(err.Error(), "accessible by group or others") {
		t.Fatalf("error %v, want a refusal of a 0644 key", err)
	}
}
