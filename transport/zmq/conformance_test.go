package zmq

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/transporttest"
)

// cluster is a hub bound at one endpoint plus client nodes linked to it.
type cluster struct {
	key  []byte
	bind string // as configured ("tcp://127.0.0.1:0")
	ep   string // as bound ("tcp://127.0.0.1:41234")
	mu   sync.Mutex
	hub  *Node
}

func (c *cluster) start(t testing.TB, bind string) *Node {
	t.Helper()
	hub, err := New(Config{Key: c.key, Bind: []string{bind}, Routes: map[string]string{"*": bind}, Bus: bind})
	if err != nil {
		t.Fatalf("start hub at %s: %v", bind, err)
	}
	t.Cleanup(func() { hub.Close() })
	return hub
}

func (c *cluster) Hub(t testing.TB) transport.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hub == nil {
		c.hub = c.start(t, c.bind)
		c.ep = c.hub.Endpoints()[0]
		if c.ep != c.bind {
			// Rebind the resolved tcp port so routes and restarts agree.
			c.hub.Close()
			c.bind = c.ep
			c.hub = c.start(t, c.ep)
		}
	}
	return c.hub
}

func (c *cluster) node(t testing.TB, key []byte) *Node {
	c.Hub(t)
	n, err := New(Config{Key: key, Routes: map[string]string{"*": c.ep}, Bus: c.ep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func (c *cluster) Node(t testing.TB) transport.Transport { return c.node(t, c.key) }

func (c *cluster) NodeWithKey(t testing.TB, key []byte) transport.Transport { return c.node(t, key) }

func (c *cluster) RestartHub(t testing.TB) transport.Transport {
	c.Hub(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hub.Close()
	c.hub = c.start(t, c.bind)
	return c.hub
}

// Endpoint is what a raw zmq4 socket dials to reach the hub. For inproc that
// is the internal name: zeroci's inproc:// is its own stream transport (see
// inprocconn.go), registered with zmq4 as zciinproc.
func (c *cluster) Endpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.HasPrefix(c.ep, "inproc://") {
		return internalEndpoint(c.ep)
	}
	return c.ep
}

var inprocSeq atomic.Uint64

func TestConformance(t *testing.T) {
	f := transporttest.Features{CrossProcess: true, Restart: true}
	t.Run("tcp", func(t *testing.T) {
		transporttest.TestTransport(t, f, func(t testing.TB) transporttest.Cluster {
			return &cluster{key: testKey(), bind: "tcp://127.0.0.1:0"}
		})
	})
	t.Run("ipc", func(t *testing.T) {
		transporttest.TestTransport(t, f, func(t testing.TB) transporttest.Cluster {
			dir, err := os.MkdirTemp("", "zci")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			return &cluster{key: testKey(), bind: "ipc://" + filepath.Join(dir, "hub.sock")}
		})
	})
	t.Run("inproc", func(t *testing.T) {
		transporttest.TestTransport(t, f, func(t testing.TB) transporttest.Cluster {
			return &cluster{key: testKey(), bind: fmt.Sprintf("inproc://conformance-%d", inprocSeq.Add(1))}
		})
	})
}
