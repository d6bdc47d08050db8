package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
	"github.com/zeroci/zeroci/transport/zmq"
)

// runTimeout bounds one measured run: a run that has not finished by then is
// a hang (a lost message, a dead link), not a slow transport.
const runTimeout = 60 * time.Second

// benchKey is the cluster key of every zmq fixture (32 bytes, as in production).
var benchKey = []byte("zeroci-bench-cluster-key-32bytes")

// timer is the part of *testing.B a measurement drives; tests pass noTimer,
// so the quick tests and the benchmarks run the same code.
type timer interface {
	ResetTimer()
	StopTimer()
}

type noTimer struct{}

func (noTimer) ResetTimer() {}
func (noTimer) StopTimer()  {}

// schemes are the zmq endpoint kinds every zmq benchmark runs over.
var schemes = []string{"tcp", "ipc", "inproc"}

// bindEndpoint returns an endpoint of scheme for a fixture to bind: tcp on an
// ephemeral loopback port, ipc in a fresh short directory (a Unix socket path
// must stay under 108 bytes, which t.TempDir paths under long benchmark names
// do not), inproc under a random name (the inproc namespace is process-wide).
func bindEndpoint(tb testing.TB, scheme string) string {
	tb.Helper()
	switch scheme {
	case "tcp":
		return "tcp://127.0.0.1:0"
	case "ipc":
		dir, err := os.MkdirTemp("", "zci")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
		return "ipc://" + filepath.Join(dir, "s")
	case "inproc":
		return "inproc://zcibench-" + randomName(tb)
	}
	tb.Fatalf("unknown scheme %q", scheme)
	return ""
}

func randomName(tb testing.TB) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// zmqCluster is a hub that binds an endpoint and brokers both the bus and
// every service, plus client nodes linked to it (each would be a separate
// process in production). Everything is closed at the test's cleanup,
// clients first.
type zmqCluster struct {
	hub     *zmq.Node
	clients []*zmq.Node
}

func newZmqCluster(tb testing.TB, scheme string, clients int) *zmqCluster {
	tb.Helper()
	ep := bindEndpoint(tb, scheme)
	hub, err := zmq.New(zmq.Config{Key: benchKey, Bind: []string{ep}, Routes: map[string]string{"*": ep}, Bus: ep})
	if err != nil {
		tb.Fatalf("zmq hub at %s: %v", ep, err)
	}
	tb.Cleanup(func() { hub.Close() })
	c := &zmqCluster{hub: hub}
	hubEp := hub.Endpoints()[0]
	for range clients {
		n, err := zmq.New(zmq.Config{Key: benchKey, Routes: map[string]string{"*": hubEp}, Bus: hubEp})
		if err != nil {
			tb.Fatalf("zmq client of %s: %v", hubEp, err)
		}
		tb.Cleanup(func() { n.Close() })
		c.clients = append(c.clients, n)
	}
	return c
}

// newInprocPair returns two nodes of one in-process network.
func newInprocPair(tb testing.TB) (transport.Transport, transport.Transport) {
	net := inproc.NewNetwork()
	a, b := net.Node(), net.Node()
	tb.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// runContext is the context of one measured run.
func runContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// percentile returns the p-th percentile (0 < p < 100) of sorted samples by
// the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

// latencyStats sorts samples in place and returns their p50 and p99.
func latencyStats(samples []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(samples)
	return percentile(samples, 50), percentile(samples, 99)
}
