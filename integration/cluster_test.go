package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/zmq"
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

// cluster is the setup a test shares across the processes it splits the
// platform into: one cluster key file, a loopback tcp endpoint for each
// module that serves, and a config file per process.
type cluster struct {
	t       *testing.T
	dir     string
	key     []byte
	keyFile string
	eps     map[string]string // module → tcp://127.0.0.1:PORT
	extra   string            // YAML added to every process's config
}

// newCluster prepares a cluster in dir; extra is YAML for every config
// (e.g. "buildscript: {allow_local: true}\n").
func newCluster(t *testing.T, dir, extra string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: dir, eps: map[string]string{}, extra: extra}
	c.key, c.keyFile = clusterKey(t, dir)
	for _, m := range []string{"eventhub", "datastore", "blob", "logging", "buildscript"} {
		c.eps[m] = "tcp://" + freeAddr(t)
	}
	return c
}

// config writes the config of process name (data dir DIR/name) and
// returns its path.
func (c *cluster) config(name string) string {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\ncluster:\n  secret_file: %s\n  endpoints:\n", filepath.Join(c.dir, name), c.keyFile)
	for _, m := range slices.Sorted(maps.Keys(c.eps)) {
		fmt.Fprintf(&b, "    %s: %s\n", m, c.eps[m])
	}
	b.WriteString(c.extra)
	path := filepath.Join(c.dir, name+".yaml")
	writeFile(c.t, path, b.String())
	return path
}

// client is a node of the cluster for the test itself: it reaches the
// data store, the logging module and the hub, and follows the hub's bus.
// It closes when the test ends.
func (c *cluster) client() transport.Transport {
	c.t.Helper()
	node, err := zmq.New(zmq.Config{Key: c.key, Bus: c.eps["eventhub"], Routes: map[string]string{
		"*": c.eps["datastore"], "logging": c.eps["logging"], "eventhub": c.eps["eventhub"],
	}})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { node.Close() })
	return node
}
