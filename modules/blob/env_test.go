package blob_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/fsstore"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testChunk is the chunk size most tests run with, so that "several
// chunks" stays cheap under -race.
const testChunk = 64 << 10

// env is the blob module on one node and a client node.
type env struct {
	srv, client transport.Transport
	dir         string // the module's data directory
	store       blobstore.Backend
	opts        blob.Options
	stop        func()
}

// staging is the module's staging directory.
func (e *env) staging() string { return filepath.Join(e.dir, "blob", "uploads") }

// start starts the module (again) on e.srv.
func (e *env) start(t testing.TB) {
	t.Helper()
	e.stop = moduletest.Start(t, blob.New(e.opts), moduletest.Host{TR: e.srv, Log: moduletest.Logger(t), Dir: e.dir})
}

// transports names the three ways the tests reach the module.
var transports = []string{"inproc", "tcp", "ipc"}

// newEnv starts the module with opts (Backend set to an fsstore under the
// data directory unless given) on a transport of the given kind.
func newEnv(t testing.TB, kind string, opts blob.Options) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	switch kind {
	case "inproc":
		net := inproc.NewNetwork()
		e.srv, e.client = net.Node(), net.Node()
	case "tcp":
		e.srv, e.client = moduletest.ZMQPair(t, "tcp://127.0.0.1:0")
	case "ipc":
		// Socket paths are limited to 107 bytes: t.TempDir is too deep.
		sock, err := os.MkdirTemp("", "zb")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(sock) })
		e.srv, e.client = moduletest.ZMQPair(t, "ipc://"+filepath.Join(sock, "b.sock"))
	default:
		t.Fatalf("unknown transport %q", kind)
	}
	t.Cleanup(func() { e.client.Close(); e.srv.Close() })
	if opts.Backend == nil && opts.Open == nil {
		st, err := fsstore.New(filepath.Join(e.dir, "store"))
		if err != nil {
			t.Fatal(err)
		}
		opts.Backend = st
	}
	e.store, e.opts = opts.Backend, opts
	e.start(t)
	return e
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randBytes returns n pseudo-random bytes from seed.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(b)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stream is n pseudo-random bytes from seed, generated as they are read.
func stream(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 0xb1}), n)
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// entries lists a directory's names.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
