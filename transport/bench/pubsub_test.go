package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

// Pub/sub throughput: one publisher sends n messages of one size as fast as
// it can to one subscriber, which counts what arrives. A run ends when the
// subscriber has accounted for all n (received, or reported missed by a
// *transport.MissedError); its rate is messages received per second from the
// first send to the last delivery.
//
// The publisher is paced: it never gets more than window messages ahead of
// what the subscriber has accounted for. Without this, a publisher that
// nothing slows down (a hub's Publish, zmq4's PUB) queues the whole run in
// memory and the figure depends on the run's length (a backlog of millions
// of messages is mostly garbage-collector work); with it, the measure is the
// steady rate of a subscriber that keeps up, and with a subscription queue
// far larger than the window, "missed" should stay 0.

// topic is what every pub/sub benchmark publishes to; subscribers use the
// prefix "bench.".
const topic = "bench.t"

// Pacing: the subscriber reports progress every paceEvery messages, and the
// publisher, every paceEvery messages, waits while it is more than the
// window ahead: windowMsgs messages, or windowBytes of payload for large
// messages.
const (
	paceEvery   = 1024
	windowMsgs  = 64 << 10
	windowBytes = 64 << 20
)

// pubSubWindow is the pacing window for messages of size bytes.
func pubSubWindow(size int) int { return max(min(windowMsgs, windowBytes/max(size, 1)), 2*paceEvery) }

// subQueue is the subscription queue of every run. It costs nothing unless
// used (a queue grows as messages wait in it), and pacing keeps the backlog
// under a window, so it is large only to leave the broker's credit (which a
// zmq subscriber returns every quarter of its queue, over the link) a wide
// margin over the window. With a queue of twice the window, the zmq 1-hop
// runs did miss messages: the hub publisher, which nothing slows down, used
// up the credit while returned credit was held up for over 15ms behind busy
// goroutines on two cores. (At 1<<20 a rare sample still missed about one
// pacing window until the broker's reader stopped flushing other
// goroutines' records inline; see docs/BENCHMARKS.md.)
const subQueue = 1 << 20

// pacer keeps a publisher at most window messages ahead of its subscriber.
// consumed is called by the subscriber goroutine, wait by the publisher's.
type pacer struct {
	window   int
	quiet    time.Duration // wait gives up after this long without progress; 0: never
	done     <-chan struct{}
	seen     atomic.Int64  // messages the subscriber accounted for, updated every paceEvery
	progress chan struct{} // capacity 1: wakes a waiting publisher

	_    [64]byte // keep the subscriber's field off the publisher's cache line
	next int      // subscriber only: the count at which to report next
}

func newPacer(window int, quiet time.Duration, done <-chan struct{}) *pacer {
	return &pacer{window: window, quiet: quiet, done: done, progress: make(chan struct{}, 1)}
}

// consumed records that the subscriber has accounted for total messages
// (counts may jump: a gap accounts for many at once).
func (p *pacer) consumed(total int) {
	if total < p.next {
		return
	}
	p.next = total + paceEvery
	p.seen.Store(int64(total))
	select {
	case p.progress <- struct{}{}:
	default:
	}
}

// wait blocks, before message sent is published, while the publisher is
// more than the window ahead. It returns early when the subscriber has
// finished, when ctx ends, or after quiet without progress (a raw PUB loses
// messages silently, so its subscriber may never catch up).
func (p *pacer) wait(ctx context.Context, sent int) {
	if sent%paceEvery != 0 || int64(sent)-p.seen.Load() <= int64(p.window) {
		return
	}
	var quiet <-chan time.Time
	if p.quiet > 0 {
		t := time.NewTimer(p.quiet)
		defer t.Stop()
		quiet = t.C
	}
	for int64(sent)-p.seen.Load() > int64(p.window) {
		select {
		case <-p.progress:
		case <-p.done:
			return
		case <-ctx.Done():
			return
		case <-quiet:
			return
		}
	}
}

// psResult is the outcome of one pub/sub run.
type psResult struct {
	received int
	missed   int
	elapsed  time.Duration // first send to last delivery
}

func (r psResult) report(b *testing.B) {
	b.ReportMetric(float64(r.received)/r.elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(r.missed), "missed")
}

// psCase is one pub/sub implementation: run measures n messages of size
// bytes; skip, when it returns a reason, skips the case for that size.
type psCase struct {
	name string
	skip func(size int) string
	run  func(tb testing.TB, tm timer, n, size int) psResult
}

// pubSubCases lists every implementation, baselines first.
func pubSubCases() []psCase {
	cases := []psCase{
		{name: "chan", run: func(tb testing.TB, tm timer, n, size int) psResult {
			return runChanPubSub(tb, tm, n, size, false)
		}},
		{name: "chan-copy", run: func(tb testing.TB, tm timer, n, size int) psResult {
			return runChanPubSub(tb, tm, n, size, true)
		}},
		{name: "inproc", run: func(tb testing.TB, tm timer, n, size int) psResult {
			pub, sub := newInprocPair(tb)
			return runTransportPubSub(tb, tm, pub, sub, n, size)
		}},
	}
	for _, s := range schemes {
		cases = append(cases,
			// One hop: the publisher is the hub (it brokers the bus); the
			// subscriber's node gets the messages over its link.
			psCase{name: "zmq-" + s + "-1hop", run: func(tb testing.TB, tm timer, n, size int) psResult {
				c := newZmqCluster(tb, s, 1)
				return runTransportPubSub(tb, tm, c.hub, c.clients[0], n, size)
			}},
			// Two hops: publisher and subscriber on two client nodes, the
			// hub in between.
			psCase{name: "zmq-" + s + "-2hop", run: func(tb testing.TB, tm timer, n, size int) psResult {
				c := newZmqCluster(tb, s, 2)
				return runTransportPubSub(tb, tm, c.clients[0], c.clients[1], n, size)
			}},
		)
	}
	for _, s := range schemes {
		cases = append(cases, psCase{
			name: "raw-zmq4-" + s,
			skip: rawSkip(s),
			run: func(tb testing.TB, tm timer, n, size int) psResult {
				return runRawPubSub(tb, tm, s, n, size)
			},
		})
	}
	return cases
}

// BenchmarkPubSub measures pub/sub throughput (msgs/s) and reports the
// messages the subscriber missed in the last run (0 unless its queue, or over
// zmq the broker's credit for it, ran out).
func BenchmarkPubSub(b *testing.B) {
	for _, size := range []int{100, 4096} {
		for _, c := range pubSubCases() {
			b.Run(fmt.Sprintf("%s/%s", sizeName(size), c.name), func(b *testing.B) {
				if c.skip != nil {
					if why := c.skip(size); why != "" {
						b.Skip(why)
					}
				}
				c.run(b, b, b.N, size).report(b)
			})
		}
	}
}

func sizeName(size int) string {
	if size%1024 == 0 {
		return fmt.Sprintf("%dKiB", size/1024)
	}
	return fmt.Sprintf("%dB", size)
}

// runChanPubSub is the floor: a buffered channel of messages, no topic
// matching, and no copy unless copyData (the transports copy every message,
// as their contract says, so chan-copy shows what that alone costs). With
// copyData, each copy is stamped with its sequence number and the subscriber
// checks it, as it does for the transports (reading a message another core
// just wrote is part of the cost); without, every message is the same buffer
// and the subscriber checks its length only. The channel's own capacity
// bounds the publisher; the pacer is there so every case runs the same loop.
func runChanPubSub(tb testing.TB, tm timer, n, size int, copyData bool) psResult {
	ctx := runContext(tb)
	ch := make(chan transport.Message, transport.DefaultQueueSize)
	payload := make([]byte, max(size, 8))[:size]
	stamp := copyData && size >= 8
	done := make(chan struct{})
	pace := newPacer(pubSubWindow(size), 0, done)
	var (
		end time.Time
		err error
	)
	tm.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			// On a bad message, keep draining (the publisher's plain
			// send must not block) and report the first one.
			m := <-ch
			if err == nil && (len(m.Data) != size || stamp && binary.LittleEndian.Uint64(m.Data) != uint64(i)) {
				err = fmt.Errorf("message %d: %d bytes, want %d with its sequence number", i, len(m.Data), size)
			}
			pace.consumed(i + 1)
		}
		end = time.Now()
	}()
	for i := 0; i < n; i++ {
		pace.wait(ctx, i)
		data := payload
		if copyData {
			data = make([]byte, size)
			copy(data, payload)
			if stamp {
				binary.LittleEndian.PutUint64(data, uint64(i))
			}
		}
		ch <- transport.Message{Topic: topic, Data: data}
	}
	<-done
	tm.StopTimer()
	if err != nil {
		tb.Fatal(err)
	}
	return psResult{received: n, elapsed: end.Sub(start)}
}

// runTransportPubSub publishes n messages from pub to one subscription of
// subNode. Each message carries its sequence number in its first 8 bytes,
// and the subscriber checks the order (a gap must be announced by a
// *transport.MissedError of the right size). Subscribe returns once the
// subscription is active, so nothing is sent before it can arrive.
func runTransportPubSub(tb testing.TB, tm timer, pub transport.Publisher, subNode transport.Subscriber, n, size int) psResult {
	tb.Helper()
	ctx := runContext(tb)
	sub, err := subNode.Subscribe(ctx, "bench.", transport.WithQueueSize(subQueue))
	if err != nil {
		tb.Fatalf("subscribe: %v", err)
	}
	defer sub.Close()
	payload := make([]byte, max(size, 8))[:size]

	type outcome struct {
		psResult
		end time.Time
		err error
	}
	done := make(chan outcome, 1)
	finished := make(chan struct{})
	pace := newPacer(pubSubWindow(size), 0, finished)
	tm.ResetTimer()
	start := time.Now()
	go func() {
		defer close(finished)
		var o outcome
		next := uint64(0)
		for o.received+o.missed < n {
			pace.consumed(o.received + o.missed)
			m, err := sub.Next(ctx)
			var missed *transport.MissedError
			switch {
			case errors.As(err, &missed):
				if missed.Count == 0 {
					o.err = fmt.Errorf("after %d messages: %w", next, err)
					done <- o
					return
				}
				o.missed += int(missed.Count)
				next += missed.Count
			case err != nil:
				o.err = fmt.Errorf("next after %d received, %d missed: %w", o.received, o.missed, err)
				done <- o
				return
			case len(m.Data) != size || m.Topic != topic:
				o.err = fmt.Errorf("message %d: topic %q, %d bytes; want %q, %d", next, m.Topic, len(m.Data), topic, size)
				done <- o
				return
			case size >= 8 && binary.LittleEndian.Uint64(m.Data) != next:
				o.err = fmt.Errorf("message %d: got sequence %d", next, binary.LittleEndian.Uint64(m.Data))
				done <- o
				return
			default:
				o.received++
				next++
			}
		}
		o.end = time.Now()
		done <- o
	}()
	for i := 0; i < n; i++ {
		pace.wait(ctx, i)
		if size >= 8 {
			binary.LittleEndian.PutUint64(payload, uint64(i))
		}
		if err := pub.Publish(ctx, topic, payload); err != nil {
			tb.Fatalf("publish %d: %v", i, err)
		}
	}
	o := <-done
	tm.StopTimer()
	if o.err != nil {
		tb.Fatal(o.err)
	}
	o.elapsed = o.end.Sub(start)
	return o.psResult
}
