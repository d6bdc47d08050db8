package zmq

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A link publishing to a broker that is not up keeps what it accepted for
// the broker, but no more than its window: then Publish blocks until ctx
// ends. When the broker comes up, the backlog is delivered in order.
func TestPublishWindowBoundsBacklog(t *testing.T) {
	noLeaks(t)
	dir, err := os.MkdirTemp("", "zci")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ep := "ipc://" + filepath.Join(dir, "bus.sock")

	for _, tc := range []struct {
		name   string
		cfg    Config
		sizes  []int // accepted
		refuse int   // the next one blocks
	}{
		{"messages", Config{PublishWindow: 3}, []int{10, 10, 10}, 10},
		{"bytes", Config{PublishWindowBytes: 1000}, []int{600}, 600},
		{"one large message may go alone", Config{PublishWindowBytes: 1000}, []int{5000}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Key, cfg.Bus = testKey(), ep
			n, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			ctx := context.Background()
			for i, size := range tc.sizes {
				if err := n.Publish(ctx, "t", make([]byte, size)); err != nil {
					t.Fatalf("publish %d within the window: %v", i, err)
				}
			}
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			if err := n.Publish(short, "t", make([]byte, tc.refuse)); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("publish past the window: %v, want it to block until the deadline", err)
			}
		})
	}

	// The backlog reaches the broker once it is up.
	n, err := New(Config{Key: testKey(), Bus: ep, Routes: map[string]string{"*": ep}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	watcher, err := New(Config{Key: testKey(), Bus: ep, Routes: map[string]string{"*": ep}})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	for i := 0; i < 3; i++ {
		if err := n.Publish(context.Background(), "early", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	hub, err := New(Config{Key: testKey(), Bind: []string{ep}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	eventually(t, 10*time.Second, "the backlog acknowledged by the broker", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		l := n.links[ep]
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.unacked) == 0
	})
	// And the link is fully usable: a subscriber elsewhere gets new messages.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := watcher.Subscribe(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Publish(ctx, "late", []byte("x")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Next(ctx)
	if err != nil || string(m.Data) != "x" {
		t.Fatalf("after the broker came up: %q %v", m.Data, err)
	}
}
