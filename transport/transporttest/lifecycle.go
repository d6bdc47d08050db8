package transporttest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

func lifecycleTests() []test {
	return []test{
		{name: "Lifecycle/NodeCloseUnblocksAndIsIdempotent", run: testNodeClose},
		{name: "Lifecycle/SubscriptionClose", run: testSubscriptionClose},
		{name: "Lifecycle/Stats", run: testStats},
		{name: "Lifecycle/HubRestart", need: needRestart, run: testHubRestart},
	}
}

// testNodeClose: Close unblocks a Next, a Request in a handler and a Request
// waiting at the balancer with ErrClosed; it is idempotent; every later call
// returns ErrClosed; other nodes go on.
func testNodeClose(t *testing.T, _ Features, c Cluster) {
	hub := c.Hub(t)
	n := c.Node(t)
	other := c.Node(t)
	started := make(chan struct{}, 4)
	mustServe(t, hub, "hold", func(ctx context.Context, req []byte) ([]byte, error) {
		if string(req) == "ping" {
			return req, nil
		}
		started <- struct{}{}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(3 * waitTimeout):
			return []byte("never cancelled"), nil
		}
	}, transport.WithConcurrency(1))
	mustServe(t, hub, "alive", echo)
	awaitService(t, n, "hold", []byte("ping"))
	awaitService(t, other, "alive", []byte("x"))

	sub := mustSubscribe(t, n, "cl.")
	svc := mustServe(t, n, "on-closing-node", echo)

	type outcome struct {
		what string
		err  error
	}
	results := make(chan outcome, 3)
	go func() {
		_, err := sub.Next(context.Background())
		results <- outcome{"Subscription.Next", err}
	}()
	go func() {
		_, err := n.Request(context.Background(), "hold", []byte("work"))
		results <- outcome{"Request in a handler", err}
	}()
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the first request never reached the handler")
	}
	go func() { // the only slot is taken: this one waits at the balancer
		_, err := n.Request(context.Background(), "hold", []byte("work"))
		results <- outcome{"Request waiting for a busy replica", err}
	}()

	if err := n.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil", err)
	}
	for i := 0; i < 3; i++ {
		select {
		case r := <-results:
			if !errors.Is(r.err, transport.ErrClosed) {
				t.Errorf("%s after Close: %s, want ErrClosed", r.what, describe(r.err))
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%d of 3 blocked calls still blocked %v after Close", 3-i, waitTimeout)
		}
	}

	ctx := ctxFor(t, waitTimeout)
	if err := n.Publish(ctx, "cl.x", []byte("x")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Publish after Close: %s, want ErrClosed", describe(err))
	}
	if _, err := n.Subscribe(ctx, "cl."); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Subscribe after Close: %s, want ErrClosed", describe(err))
	}
	if _, err := n.Request(ctx, "alive", []byte("x")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Request after Close: %s, want ErrClosed", describe(err))
	}
	if _, err := n.Serve("later", echo); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Serve after Close: %s, want ErrClosed", describe(err))
	}
	if _, err := sub.Next(ctx); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Next on a subscription of a closed node: %s, want ErrClosed", describe(err))
	}
	for i := 0; i < 2; i++ {
		if err := sub.Close(); err != nil {
			t.Errorf("Subscription.Close #%d after node Close: %v, want nil", i+1, err)
		}
		if err := svc.Close(); err != nil {
			t.Errorf("Service.Close #%d after node Close: %v, want nil", i+1, err)
		}
	}
	_ = n.Stats() // still callable

	if reply, err := request(other, waitTimeout, "alive", []byte("x")); err != nil || string(reply) != "echo:x" {
		t.Fatalf("another node after one node closed: reply %q, %s", reply, describe(err))
	}
	var last error
	eventually(t, waitTimeout, func() bool {
		_, last = request(other, time.Second, "on-closing-node", []byte("x"))
		return errors.Is(last, transport.ErrNoResponder)
	}, "the closed node's service still reachable; last: %s", describe(last))
}

// testSubscriptionClose: Close unblocks Next with ErrClosed, is idempotent,
// and leaves the node's other subscriptions working.
func testSubscriptionClose(t *testing.T, _ Features, c Cluster) {
	n := c.Node(t)
	pub := c.Node(t)
	s1 := mustSubscribe(t, n, "sc.")
	s2 := mustSubscribe(t, n, "sc.")
	done := make(chan error, 1)
	go func() {
		_, err := s1.Next(context.Background())
		done <- err
	}()
	for i := 0; i < 2; i++ {
		if err := s1.Close(); err != nil {
			t.Fatalf("Subscription.Close #%d: %v, want nil", i+1, err)
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("blocked Next after Close: %s, want ErrClosed", describe(err))
		}
	case <-time.After(waitTimeout):
		t.Fatal("Next still blocked after Subscription.Close")
	}
	if _, err := s1.Next(ctxFor(t, waitTimeout)); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Next after Close: %s, want ErrClosed", describe(err))
	}
	mustPublish(t, pub, "sc.x", []byte("still here"))
	if m := mustRecv(t, s2, "the other subscription"); string(m.Data) != "still here" {
		t.Fatalf("the other subscription got %q", m.Data)
	}
}

// testStats: the counters count what this node did.
func testStats(t *testing.T, _ Features, c Cluster) {
	pub := c.Node(t)
	sn := c.Node(t)
	a := mustSubscribe(t, sn, "st.")
	b := mustSubscribe(t, sn, "")
	mustServe(t, sn, "st-svc", echo)
	awaitService(t, pub, "st-svc", []byte("warm-up"))
	p0, s0 := pub.Stats(), sn.Stats()
	for i := 0; i < 10; i++ {
		mustPublish(t, pub, "st.x", []byte(fmt.Sprint(i)))
	}
	for _, s := range []transport.Subscription{a, b} {
		for i := 0; i < 10; i++ {
			mustRecv(t, s, "stats message")
		}
	}
	for i := 0; i < 5; i++ {
		if _, err := request(pub, waitTimeout, "st-svc", []byte("x")); err != nil {
			t.Fatalf("request %d: %s", i, describe(err))
		}
	}
	p1, s1 := pub.Stats(), sn.Stats()
	checks := []struct {
		what      string
		got, want uint64
	}{
		{"publisher Published", p1.Published - p0.Published, 10},
		{"subscriber node Delivered (2 subscriptions × 10)", s1.Delivered - s0.Delivered, 20},
		{"subscriber node Dropped", s1.Dropped - s0.Dropped, 0},
		{"caller Requests", p1.Requests - p0.Requests, 5},
		{"server Served", s1.Served - s0.Served, 5},
		{"caller AuthFailures", p1.AuthFailures, 0},
		{"caller Malformed", p1.Malformed, 0},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s grew by %d, want %d (before %+v, after %+v)", ch.what, ch.got, ch.want, p0, p1)
		}
	}
}

// testHubRestart: the hub restarts at the same address. A subscription sees
// a MissedError with an unknown count, then new messages; requests succeed
// again within a bounded time.
func testHubRestart(t *testing.T, _ Features, c Cluster) {
	c.Hub(t)
	subNode := c.Node(t)
	pub := c.Node(t)
	server := c.Node(t)
	caller := c.Node(t)
	sub := mustSubscribe(t, subNode, "rs.", transport.WithQueueSize(4096))
	mustServe(t, server, "rs-echo", echo)
	awaitService(t, caller, "rs-echo", []byte("before"))
	mustPublish(t, pub, "rs.before", []byte("before"))
	if m := mustRecv(t, sub, "before restart"); m.Topic != "rs.before" {
		t.Fatalf("before restart got topic %q", m.Topic)
	}

	c.RestartHub(t)
	const recovery = 20 * time.Second
	deadline := time.Now().Add(recovery)
	sawGap := false
	var lastPub error
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no message after the hub restart within %v (gap seen: %v, last Publish error: %s)", recovery, sawGap, describe(lastPub))
		}
		if err := pub.Publish(ctxFor(t, time.Second), "rs.after", []byte(fmt.Sprint(i))); err != nil {
			if errors.Is(err, transport.ErrClosed) {
				t.Fatalf("Publish after the hub restart: %s: a node must survive its hub's restart", describe(err))
			}
			lastPub = err
		}
		m, err := recv(sub, 100*time.Millisecond)
		if n, ok := missed(err); ok {
			if n != 0 {
				t.Fatalf("after the hub restart: MissedError with count %d, want 0 (unknown: the link was lost)", n)
			}
			sawGap = true
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			t.Fatalf("Next after the hub restart: %s", describe(err))
		}
		if m.Topic != "rs.after" {
			t.Fatalf("after the hub restart got topic %q, want rs.after", m.Topic)
		}
		if !sawGap {
			t.Fatalf("a message arrived after the hub restart with no MissedError before it: the link loss was silent")
		}
		break
	}
	var last error
	eventually(t, recovery, func() bool {
		_, last = request(caller, time.Second, "rs-echo", []byte("after"))
		return last == nil
	}, "requests never succeeded again after the hub restart; last: %s", describe(last))
}
