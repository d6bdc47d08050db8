package zmq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

func testKey() []byte { return []byte("0123456789abcdef0123456789abcdef") }

// pair starts a hub bound at ep and a node linked to it.
func pair(t *testing.T, ep string) (*Node, *Node) {
	t.Helper()
	hub, err := New(Config{Key: testKey(), Bind: []string{ep}, Routes: map[string]string{"*": ep}, Bus: ep})
	if err != nil {
		t.Fatal(err)
	}
	ep = hub.Endpoints()[0]
	node, err := New(Config{Key: testKey(), Routes: map[string]string{"*": ep}, Bus: ep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close(); hub.Close() })
	return hub, node
}

func TestSmoke(t *testing.T) {
	dir, _ := os.MkdirTemp("", "zci")
	defer os.RemoveAll(dir)
	for _, ep := range []string{"tcp://127.0.0.1:0", "ipc://" + filepath.Join(dir, "s"), "inproc://smoke"} {
		t.Run(ep, func(t *testing.T) {
			hub, node := pair(t, ep)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sub, err := node.Subscribe(ctx, "a.")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := hub.Serve("echo", func(ctx context.Context, b []byte) ([]byte, error) { return append([]byte("re:"), b...), nil }); err != nil {
				t.Fatal(err)
			}
			rep, err := node.Request(ctx, "echo", []byte("x"))
			if err != nil || string(rep) != "re:x" {
				t.Fatalf("request: %q %v", rep, err)
			}
			for i := 0; i < 100; i++ {
				if err := hub.Publish(ctx, "a.b", []byte(fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
				if err := node.Publish(ctx, "b.c", []byte("no")); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 100; i++ {
				m, err := sub.Next(ctx)
				if err != nil || string(m.Data) != fmt.Sprint(i) {
					t.Fatalf("next %d: %q %v", i, m.Data, err)
				}
			}
			// a replica on the node, called from the hub
			if _, err := node.Serve("up", func(ctx context.Context, b []byte) ([]byte, error) { return []byte("UP"), nil }); err != nil {
				t.Fatal(err)
			}
			rep, err = hub.Request(ctx, "up", nil)
			if err != nil || string(rep) != "UP" {
				t.Fatalf("request to node replica: %q %v", rep, err)
			}
			_, err = node.Request(ctx, "none", nil)
			if err == nil || !errors.Is(err, transport.ErrNoResponder) {
				t.Fatalf("want no responder, got %v", err)
			}
		})
	}
}
