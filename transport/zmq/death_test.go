package zmq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

// kill makes a node vanish the way a SIGKILLed process does: its sockets
// close with no goodbye, and it stops answering heartbeats.
func kill(n *Node) {
	n.mu.Lock()
	for _, l := range n.links {
		l.mu.Lock()
		l.closed = true // stop sending pings, handling packets
		l.mu.Unlock()
		l.sock.Close()
	}
	n.mu.Unlock()
}

func TestReplicaDeathDetectedByHeartbeat(t *testing.T) {
	noLeaks(t)
	cfg := func(c Config) Config {
		c.Key = testKey()
		c.HeartbeatInterval, c.HeartbeatTimeout = 50*time.Millisecond, 400*time.Millisecond
		return c
	}
	hub, err := New(cfg(Config{Bind: []string{"tcp://127.0.0.1:0"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ep := hub.Endpoints()[0]
	hub.cfg.Routes = map[string]string{"*": ep}
	newNode := func() *Node {
		n, err := New(cfg(Config{Routes: map[string]string{"*": ep}}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	doomed, survivor, caller := newNode(), newNode(), newNode()

	started := make(chan struct{}, 8)
	block := func(ctx context.Context, _ []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if _, err := doomed.Serve("work", block, transport.WithConcurrency(8)); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	plain := make(chan error, 1)
	go func() { _, err := caller.Request(ctx, "work", nil); plain <- err }()
	type result struct {
		rep []byte
		err error
	}
	retried := make(chan result, 1)
	go func() {
		rep, err := caller.Request(ctx, "work", nil, transport.Idempotent())
		retried <- result{rep, err}
	}()
	<-started
	<-started
	if _, err := survivor.Serve("work", func(context.Context, []byte) ([]byte, error) { return []byte("ok"), nil }); err != nil {
		t.Fatal(err)
	}

	kill(doomed)
	t0 := time.Now()
	select {
	case err := <-plain:
		if !errors.Is(err, transport.ErrResponderLost) {
			t.Fatalf("request in flight on a dead replica: %v, want ErrResponderLost", err)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Fatalf("death noticed after %v", d)
		}
	case <-ctx.Done():
		t.Fatal("request on a dead replica never failed")
	}

	// The idempotent request caught by the death was retried on the live
	// replica, and later requests go only there.
	if r := <-retried; r.err != nil || string(r.rep) != "ok" {
		t.Fatalf("idempotent request in flight on a dead replica: %q %v, want a retry to succeed", r.rep, r.err)
	}
	for i := 0; i < 20; i++ {
		rep, err := caller.Request(ctx, "work", nil, transport.Idempotent())
		if err != nil || string(rep) != "ok" {
			t.Fatalf("request %d after the death: %q %v", i, rep, err)
		}
	}
}
