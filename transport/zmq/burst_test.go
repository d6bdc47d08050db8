package zmq

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

// A burst far larger than a fresh subscription's queue, published the
// moment Subscribe returns: every message is either delivered or counted
// in a MissedError, and the subscription keeps working afterwards. (A link
// once re-sent its first subscription on the broker's welcome, and the
// broker's replacement forgot the drops: messages vanished unreported.)
func TestBurstAfterSubscribeLosesNothingSilently(t *testing.T) {
	noLeaks(t)
	for _, bind := range []string{"tcp://127.0.0.1:0", "inproc://burst"} {
		t.Run(bind, func(t *testing.T) {
			hub, node := pair(t, bind)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sub, err := node.Subscribe(ctx, "b.")
			if err != nil {
				t.Fatal(err)
			}
			const total = 10000
			for i := 0; i < total; i++ {
				if err := hub.Publish(ctx, "b.x", []byte(fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			var got, missed uint64
			for got+missed < total {
				m, err := sub.Next(ctx)
				var me *transport.MissedError
				switch {
				case errors.As(err, &me):
					if me.Count == 0 {
						t.Fatalf("a gap of unknown size: the link was never lost")
					}
					missed += me.Count
				case err != nil:
					t.Fatalf("after %d delivered and %d reported missed of %d: %v", got, missed, total, err)
				default:
					if string(m.Data) != fmt.Sprint(got+missed) {
						t.Fatalf("message %q where %d was due", m.Data, got+missed)
					}
					got++
				}
			}
			if got < transport.DefaultQueueSize {
				t.Errorf("only %d delivered; the queue holds %d", got, transport.DefaultQueueSize)
			}
			if err := hub.Publish(ctx, "b.x", []byte("after")); err != nil {
				t.Fatal(err)
			}
			if m, err := sub.Next(ctx); err != nil || string(m.Data) != "after" {
				t.Fatalf("after the burst: %q %v", m.Data, err)
			}
		})
	}
}
