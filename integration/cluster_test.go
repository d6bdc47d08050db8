package integration

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clusterKey writes a fresh cluster key to dir/cluster.key (mode 0600),
// the one key file every process of a split test reads; it returns the
// key and the file.
func clusterKey(t *testing.T, dir string) ([]byte, string) {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, keyFile
}

// singleServer runs the whole platform as one process in dir (the
// embedded defaults, HTTP on a free loopback port, local repositories
// allowed) and returns it, its HTTP base URL and its admin token once it
// is ready.
func singleServer(t *testing.T, dir string) (*proc, string, string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "server.yaml"), "data_dir: data\nhttp: {addr: \"127.0.0.1:0\"}\nbuildscript: {allow_local: true}\n")
	srv := start(t, "server", dir, cleanEnv(), "server", "--config", "server.yaml")
	base := srv.httpBase()
	waitStatus(t, base+"/readyz", 200, 60*time.Second)
	raw, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return srv, base, strings.TrimSpace(string(raw))
}
