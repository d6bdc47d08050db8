package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Raw zmq4 sockets with nothing on top: the baselines transport/zmq is judged
// against. They run with zmq4's own transports (tcp, ipc, inproc), not the
// guarded ones transport/zmq registers.

// rawMaxInprocFrame is the largest frame zmq4's own inproc transport carries
// intact: it hands each write to the reader as one chunk and drops what does
// not fit the reader's buffer, so longer frames corrupt the stream.
const rawMaxInprocFrame = 255

// rawSkip returns the skip rule of a raw case over scheme.
func rawSkip(scheme string) func(size int) string {
	return func(size int) string {
		if scheme == "inproc" && size > rawMaxInprocFrame {
			return fmt.Sprintf("zmq4's inproc transport corrupts frames over %d bytes (it drops what does not fit the reader's buffer); no raw inproc baseline at %d bytes", rawMaxInprocFrame, size)
		}
		return ""
	}
}

// rawEndpoint returns an endpoint of scheme for zmq4's own transports: the
// same shapes as bindEndpoint (zmq4's inproc namespace is its own).
func rawEndpoint(tb testing.TB, scheme string) string { return bindEndpoint(tb, scheme) }

// rawListen binds sock at an endpoint of scheme and returns the endpoint to
// dial (with the tcp port resolved).
func rawListen(tb testing.TB, sock zmq4.Socket, scheme string) string {
	tb.Helper()
	ep := rawEndpoint(tb, scheme)
	if err := sock.Listen(ep); err != nil {
		tb.Fatalf("listen %s: %v", ep, err)
	}
	if scheme == "tcp" {
		return "tcp://" + sock.Addr().String()
	}
	return ep
}

// Marker byte after the "bench." topic prefix of a raw message: warm-up
// messages are sent until the subscription is live, then measured ones.
const (
	markWarm     = 'w'
	markMeasured = 'm'
)

// rawQuiet is how long the raw subscriber may receive nothing, once the
// publisher has sent everything, before what is missing is counted as lost.
const rawQuiet = time.Second

// runRawPubSub sends n single-frame messages of size bytes (topic prefix
// included) from a zmq4 PUB to a SUB subscribed to "bench.". zmq4's PUB
// delivers nothing until the SUB's subscription has reached it, and gives
// no sign when that happens, so warm-up messages are sent until one arrives
// (the SUB skips them); the clock starts after that. A PUB never reports
// loss, so the SUB counts what arrives: the run ends when all n have, or
// when nothing more arrives for rawQuiet after the last send, and the
// difference is reported as missed. The publisher is paced like every other
// case (zmq4's PUB queues without bound otherwise). Every message shares one
// buffer: zmq4 queues it without copying, as cheap as a baseline gets.
func runRawPubSub(tb testing.TB, tm timer, scheme string, n, size int) psResult {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := zmq4.NewPub(ctx)
	defer pub.Close()
	ep := rawListen(tb, pub, scheme)
	sub := zmq4.NewSub(ctx)
	defer sub.Close()
	if err := sub.Dial(ep); err != nil {
		tb.Fatalf("dial %s: %v", ep, err)
	}
	if err := sub.SetOption(zmq4.OptionSubscribe, "bench."); err != nil {
		tb.Fatalf("subscribe: %v", err)
	}

	msgSize := max(size, len(topic)+1)
	warm := make([]byte, msgSize)
	copy(warm, "bench.")
	warm[len("bench.")] = markWarm
	payload := make([]byte, msgSize)
	copy(payload, "bench.")
	payload[len("bench.")] = markMeasured

	var (
		received atomic.Int64
		lastNano atomic.Int64 // time of the latest measured delivery
	)
	live := make(chan struct{})
	done := make(chan error, 1)
	finished := make(chan struct{})
	pace := newPacer(pubSubWindow(size), rawQuiet, finished)
	go func() {
		defer close(finished)
		isLive := false
		for received.Load() < int64(n) {
			msg, err := sub.Recv()
			if err != nil {
				done <- err // closed: the quiet timer gave up
				return
			}
			if len(msg.Frames) != 1 || len(msg.Frames[0]) != msgSize {
				done <- fmt.Errorf("raw sub: got %d frames, want one of %d bytes", len(msg.Frames), msgSize)
				return
			}
			switch msg.Frames[0][len("bench.")] {
			case markWarm:
				if !isLive {
					isLive = true
					close(live)
				}
			case markMeasured:
				lastNano.Store(time.Now().UnixNano())
				pace.consumed(int(received.Add(1)))
			}
		}
		done <- nil
	}()

	// Warm up until the subscription is live.
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
warmup:
	for {
		if err := pub.Send(zmq4.NewMsg(warm)); err != nil {
			tb.Fatalf("warm-up send: %v", err)
		}
		select {
		case <-live:
			break warmup
		case err := <-done:
			tb.Fatalf("raw sub ended during warm-up: %v", err)
		case <-tick.C:
			if time.Now().After(deadline) {
				tb.Fatalf("raw PUB/SUB over %s: subscription not live after 10s", scheme)
			}
		}
	}

	tm.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		pace.wait(context.Background(), i)
		if err := pub.Send(zmq4.NewMsg(payload)); err != nil {
			tb.Fatalf("send %d: %v", i, err)
		}
	}
	// Wait for everything, or for rawQuiet without progress.
	last, lastChange := received.Load(), time.Now()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case now := <-tick.C:
			if r := received.Load(); r != last {
				last, lastChange = r, now
			} else if now.Sub(lastChange) > rawQuiet {
				sub.Close() // unblocks Recv; what did not arrive is lost
				<-done
				err = nil
				break wait
			}
		}
	}
	tm.StopTimer()
	if err != nil {
		tb.Fatal(err)
	}
	got := int(received.Load())
	if got == 0 {
		tb.Fatalf("raw PUB/SUB over %s: none of %d messages arrived", scheme, n)
	}
	return psResult{received: got, missed: n - got, elapsed: time.Unix(0, lastNano.Load()).Sub(start)}
}

// rawEcho starts a zmq4 ROUTER that sends every message back to its sender,
// and a DEALER connected to it. The returned round trip is for one caller at
// a time (a DEALER has no request ids).
func rawEcho(tb testing.TB, scheme string) roundTrip {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	router := zmq4.NewRouter(ctx)
	ep := rawListen(tb, router, scheme)
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		for {
			msg, err := router.Recv()
			if err != nil {
				return
			}
			if err := router.Send(msg); err != nil {
				return
			}
		}
	}()
	dealer := zmq4.NewDealer(ctx)
	tb.Cleanup(func() {
		dealer.Close()
		router.Close()
		cancel()
		<-echoDone
	})
	if err := dealer.Dial(ep); err != nil {
		tb.Fatalf("dial %s: %v", ep, err)
	}
	return func(_ context.Context, req []byte) ([]byte, error) {
		if err := dealer.Send(zmq4.NewMsg(req)); err != nil {
			return nil, err
		}
		msg, err := dealer.Recv()
		if err != nil {
			return nil, err
		}
		if len(msg.Frames) != 1 {
			return nil, fmt.Errorf("raw echo: %d frames", len(msg.Frames))
		}
		return msg.Frames[0], nil
	}
}
