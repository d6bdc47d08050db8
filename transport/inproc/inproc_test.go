package inproc

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/transporttest"
)

// cluster is a transporttest.Cluster of nodes on one Network. All nodes are
// equal; the hub is just the first one asked for.
type cluster struct {
	net *Network
	hub transport.Transport
}

func newCluster(testing.TB) transporttest.Cluster { return &cluster{net: NewNetwork()} }

func (c *cluster) Hub(t testing.TB) transport.Transport {
	if c.hub == nil {
		c.hub = c.Node(t)
	}
	return c.hub
}

func (c *cluster) Node(t testing.TB) transport.Transport {
	n := c.net.Node()
	t.Cleanup(func() { n.Close() })
	return n
}

func (c *cluster) NodeWithKey(t testing.TB, _ []byte) transport.Transport {
	t.Fatal("inproc: no cluster key: NodeWithKey is for CrossProcess transports")
	return nil
}

func (c *cluster) RestartHub(t testing.TB) transport.Transport {
	t.Fatal("inproc: no hub to restart")
	return nil
}

func (c *cluster) Endpoint() string { return "" }

func TestConformance(t *testing.T) {
	transporttest.TestTransport(t, transporttest.Features{}, newCluster)
}

// ---- inproc-specific tests (beyond the conformance suite) ----

// newNodes returns k nodes of a fresh network. They are closed at the
// test's cleanup, after which no goroutine may be left.
func newNodes(t *testing.T, k int) (*Network, []transport.Transport) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs last
	net := NewNetwork()
	nodes := make([]transport.Transport, k)
	for i := range nodes {
		n := net.Node()
		t.Cleanup(func() { n.Close() })
		nodes[i] = n
	}
	return net, nodes
}

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestManySubscriptions: 10k idle subscriptions cost little, a publish
// reaches only the matching ones, and closing them empties the index.
func TestManySubscriptions(t *testing.T) {
	net, nodes := newNodes(t, 2)
	sn, pn := nodes[0], nodes[1]
	ctx := ctx10s(t)
	const n = 10_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	subs := make([]transport.Subscription, n)
	for i := range subs {
		s, err := sn.Subscribe(ctx, fmt.Sprintf("many.%d.", i))
		if err != nil {
			t.Fatal(err)
		}
		subs[i] = s
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d idle subscriptions: %d B each", n, per)
	if per > 2048 {
		t.Errorf("an idle subscription costs %d B, want under 2 KiB (queues must not be preallocated)", per)
	}
	if err := pn.Publish(ctx, "many.4242.x", []byte("hit")); err != nil {
		t.Fatal(err)
	}
	for i, s := range subs {
		q := s.(*subscription).q
		want := 0
		if i == 4242 {
			want = 1
		}
		if q.Len() != want {
			t.Fatalf("subscription %d has %d queued, want %d", i, q.Len(), want)
		}
	}
	for _, s := range subs {
		s.Close()
	}
	x := &net.subs
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.byPrefix) != 0 || len(x.lengths) != 0 {
		t.Fatalf("index not empty after closing every subscription: %d prefixes, lengths %v", len(x.byPrefix), x.lengths)
	}
}

// TestSubscribeChurn: subscriptions come and go concurrently with
// publishing; a steady subscription still gets every message in order.
func TestSubscribeChurn(t *testing.T) {
	_, nodes := newNodes(t, 2)
	pub, sn := nodes[0], nodes[1]
	ctx := ctx10s(t)
	const msgs = 5000
	steady, err := sn.Subscribe(ctx, "churn.", transport.WithQueueSize(msgs))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				prefixes := []string{"", "churn.", "churn", "c", fmt.Sprint("churn.", i%7)}
				s, err := sn.Subscribe(ctx, prefixes[i%len(prefixes)], transport.WithQueueSize(8))
				if err != nil {
					t.Error(err)
					return
				}
				s.(*subscription).q.TryNext() // a message or nothing; then go away
				s.Close()
			}
		}()
	}
	for i := 0; i < msgs; i++ {
		if err := pub.Publish(ctx, fmt.Sprint("churn.", i%7), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for i := 0; i < msgs; i++ {
		m, err := steady.Next(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, m.Data)
		}
	}
}

// TestBalancerEdges: cases the conformance suite cannot set up portably.
func TestBalancerEdges(t *testing.T) {
	t.Run("nil handler", func(t *testing.T) {
		_, nodes := newNodes(t, 1)
		if _, err := nodes[0].Serve("x", nil); err == nil {
			t.Fatal("Serve with a nil handler succeeded")
		}
	})
	t.Run("idempotent with no other replica", func(t *testing.T) {
		_, nodes := newNodes(t, 2)
		a, b := nodes[0], nodes[1]
		started := make(chan struct{})
		if _, err := a.Serve("only", func(ctx context.Context, _ []byte) ([]byte, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		ctx := ctx10s(t)
		res := make(chan error, 1)
		go func() {
			_, err := b.Request(ctx, "only", nil, transport.Idempotent())
			res <- err
		}()
		select {
		case <-started:
		case err := <-res:
			t.Fatalf("request ended before reaching the replica: %v", err)
		}
		a.Close()
		if err := <-res; !errors.Is(err, transport.ErrResponderLost) {
			t.Fatalf("got %v, want ErrResponderLost", err)
		}
	})
	t.Run("waiters fail when the last replica closes", func(t *testing.T) {
		net, nodes := newNodes(t, 2)
		a, b := nodes[0], nodes[1]
		started := make(chan struct{}, 1)
		svc, err := a.Serve("one", func(ctx context.Context, _ []byte) ([]byte, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}, transport.WithConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctx10s(t)
		first := make(chan error, 1)
		go func() { _, err := b.Request(ctx, "one", nil); first <- err }()
		select {
		case <-started:
		case err := <-first:
			t.Fatalf("first request ended before reaching the replica: %v", err)
		}
		second := make(chan error, 1)
		go func() { _, err := b.Request(ctx, "one", nil); second <- err }()
		// Wait until the second request waits at the balancer.
		deadline := time.Now().Add(5 * time.Second)
		for {
			net.svcMu.Lock()
			w := 0
			if g := net.groups["one"]; g != nil {
				w = len(g.waiters)
			}
			net.svcMu.Unlock()
			if w == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the second request never queued at the balancer")
			}
			time.Sleep(time.Millisecond)
		}
		svc.Close()
		if err := <-first; !errors.Is(err, transport.ErrResponderLost) {
			t.Errorf("in-flight request: %v, want ErrResponderLost", err)
		}
		if err := <-second; !errors.Is(err, transport.ErrNoResponder) {
			t.Errorf("waiting request: %v, want ErrNoResponder", err)
		}
		net.svcMu.Lock()
		defer net.svcMu.Unlock()
		if len(net.groups) != 0 {
			t.Errorf("%d service groups left after every replica closed", len(net.groups))
		}
	})
	t.Run("reply after the deadline is a deadline error", func(t *testing.T) {
		_, nodes := newNodes(t, 1)
		a := nodes[0]
		// The handler replies late, once its ctx has ended.
		if _, err := a.Serve("late", func(ctx context.Context, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return []byte("late"), nil
		}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			r, err := a.Request(ctx, "late", nil)
			cancel()
			if !errors.Is(err, transport.ErrDeadlineExceeded) {
				t.Fatalf("attempt %d: got %q, %v; want ErrDeadlineExceeded", i, r, err)
			}
		}
	})
}

// TestRequestToOwnReplicaOnClose: a node's Close loses the requests its own
// replicas are handling for it; its callers get ErrClosed (every blocked
// call of a closed node does), never ErrResponderLost, and an idempotent
// one is not retried on another node's replica. (This pins the order in
// Close: the node is marked closed before its replicas are lost.)
func TestRequestToOwnReplicaOnClose(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprint("idempotent=", idempotent), func(t *testing.T) {
			_, nodes := newNodes(t, 2)
			self, other := nodes[0], nodes[1]
			started := make(chan struct{}, 1)
			if _, err := self.Serve("own", func(ctx context.Context, _ []byte) ([]byte, error) {
				started <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			}); err != nil {
				t.Fatal(err)
			}
			var otherCalls atomic.Int32
			if _, err := other.Serve("own", func(context.Context, []byte) ([]byte, error) {
				otherCalls.Add(1)
				return []byte("other"), nil
			}, transport.WithConcurrency(1)); err != nil {
				t.Fatal(err)
			}
			// Both replicas are idle, so the balancer may pick either:
			// send until the node's own replica holds a request.
			var opts []transport.RequestOption
			if idempotent {
				opts = append(opts, transport.Idempotent())
			}
			ctx := ctx10s(t)
			res := make(chan error, 1)
			go func() {
				for {
					r, err := self.Request(ctx, "own", nil, opts...)
					if err == nil && string(r) == "other" {
						continue // answered by the other replica: try again
					}
					res <- err
					return
				}
			}()
			select {
			case <-started:
			case err := <-res:
				t.Fatalf("request ended before reaching the node's own replica: %v", err)
			}
			before := otherCalls.Load()
			self.Close()
			if err := <-res; !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("request on the closing node's own replica: %v, want ErrClosed", err)
			}
			if n := otherCalls.Load() - before; n != 0 {
				t.Fatalf("the closed node's request was retried on the other node (%d calls)", n)
			}
		})
	}
}
