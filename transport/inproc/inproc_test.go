package inproc

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
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

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestManySubscriptions: 10k idle subscriptions cost little, a publish
// reaches only the matching ones, and closing them empties the index.
func TestManySubscriptions(t *testing.T) {
	defer goleak.VerifyNone(t)
	net := NewNetwork()
	sn, pn := net.Node(), net.Node()
	defer sn.Close()
	defer pn.Close()
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
	defer goleak.VerifyNone(t)
	net := NewNetwork()
	pub, sn := net.Node(), net.Node()
	defer pub.Close()
	defer sn.Close()
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
	defer goleak.VerifyNone(t)
	t.Run("nil handler", func(t *testing.T) {
		n := NewNetwork().Node()
		defer n.Close()
		if _, err := n.Serve("x", nil); err == nil {
			t.Fatal("Serve with a nil handler succeeded")
		}
	})
	t.Run("idempotent with no other replica", func(t *testing.T) {
		net := NewNetwork()
		a, b := net.Node(), net.Node()
		defer b.Close()
		started := make(chan struct{})
		if _, err := a.Serve("only", func(ctx context.Context, _ []byte) ([]byte, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		res := make(chan error, 1)
		go func() {
			_, err := b.Request(ctx10s(t), "only", nil, transport.Idempotent())
			res <- err
		}()
		<-started
		a.Close()
		if err := <-res; !errors.Is(err, transport.ErrResponderLost) {
			t.Fatalf("got %v, want ErrResponderLost", err)
		}
	})
	t.Run("waiters fail when the last replica closes", func(t *testing.T) {
		net := NewNetwork()
		a, b := net.Node(), net.Node()
		defer a.Close()
		defer b.Close()
		started := make(chan struct{}, 1)
		svc, err := a.Serve("one", func(ctx context.Context, _ []byte) ([]byte, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}, transport.WithConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		first := make(chan error, 1)
		go func() { _, err := b.Request(ctx10s(t), "one", nil); first <- err }()
		<-started
		second := make(chan error, 1)
		go func() { _, err := b.Request(ctx10s(t), "one", nil); second <- err }()
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
		net := NewNetwork()
		a := net.Node()
		defer a.Close()
		// The handler ignores ctx and replies late.
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

// ---- benchmarks ----

// BenchmarkPubSub: one publisher node, one subscription on another node.
// "lossless" makes the publisher yield while the subscription's queue is
// full (inproc's Publish never blocks), so every message is delivered and
// msg/s compares with BenchmarkGoChannel; "dropping" publishes flat out and
// reports delivered msg/s and the dropped fraction.
func BenchmarkPubSub(b *testing.B) {
	for _, size := range []int{100, 4096} {
		for _, lossless := range []bool{true, false} {
			mode := "dropping"
			if lossless {
				mode = "lossless"
			}
			b.Run(fmt.Sprintf("%dB/%s", size, mode), func(b *testing.B) {
				net := NewNetwork()
				pub, sn := net.Node(), net.Node()
				defer pub.Close()
				defer sn.Close()
				ctx := context.Background()
				s, err := sn.Subscribe(ctx, "bench.")
				if err != nil {
					b.Fatal(err)
				}
				q := s.(*subscription).q
				data := make([]byte, size)
				done := make(chan struct{})
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				go func() {
					defer close(done)
					var seen uint64
					for seen < uint64(b.N) {
						_, err := s.Next(ctx)
						if err != nil {
							seen += err.(*transport.MissedError).Count
							continue
						}
						seen++
					}
				}()
				for i := 0; i < b.N; i++ {
					for lossless && q.Len() >= transport.DefaultQueueSize {
						runtime.Gosched()
					}
					pub.Publish(ctx, "bench.topic", data)
				}
				<-done
				b.StopTimer()
				delivered := uint64(b.N) - q.Dropped()
				b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "msg/s")
				b.ReportMetric(float64(q.Dropped())/float64(b.N), "dropped/op")
			})
		}
	}
}

// BenchmarkGoChannel is the baseline: a buffered channel of the same
// capacity, "bare" passing the same slice each time, "copy" copying the
// payload per message as the transport contract requires.
func BenchmarkGoChannel(b *testing.B) {
	for _, size := range []int{100, 4096} {
		for _, copying := range []bool{false, true} {
			mode := "bare"
			if copying {
				mode = "copy"
			}
			b.Run(fmt.Sprintf("%dB/%s", size, mode), func(b *testing.B) {
				ch := make(chan transport.Message, transport.DefaultQueueSize)
				data := make([]byte, size)
				done := make(chan struct{})
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				go func() {
					defer close(done)
					for i := 0; i < b.N; i++ {
						<-ch
					}
				}()
				for i := 0; i < b.N; i++ {
					d := data
					if copying {
						d = make([]byte, len(data))
						copy(d, data)
					}
					ch <- transport.Message{Topic: "bench.topic", Data: d}
				}
				<-done
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
			})
		}
	}
}

// BenchmarkRequestReply: sequential 100-byte requests from one node to an
// echo replica on another; reports latency percentiles.
func BenchmarkRequestReply(b *testing.B) {
	net := NewNetwork()
	server, caller := net.Node(), net.Node()
	defer server.Close()
	defer caller.Close()
	if _, err := server.Serve("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := make([]byte, 100)
	lat := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := caller.Request(ctx, "echo", data); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
