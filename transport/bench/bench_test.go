package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// zmq4LeakOptions are goroutines zmq4 v0.17.0 itself leaves behind after the
// raw baselines closed their sockets, and that nothing outside zmq4 can stop:
// one per PUB socket (see /work/shared/ZMQ4.md), and the readers of its own
// inproc connections, which Close does not end. transport/zmq uses neither
// (it has its own inproc transport and no PUB sockets).
func zmq4LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/go-zeromq/zmq4.(*pubMWriter).run"),
		goleak.IgnoreTopFunction("github.com/go-zeromq/zmq4/internal/inproc.(*conn).read"),
	}
}

// The benchmarks run only with -bench. These tests run every fixture they
// use, on a few messages, and check that each delivers everything it should
// with the sizes and order the benchmarks rely on; they take well under a
// second, so `go test ./...` stays cheap.

func TestPubSubFixtures(t *testing.T) {
	defer goleak.VerifyNone(t, zmq4LeakOptions()...)
	const n = 300
	for _, size := range []int{100, 4096} {
		for _, c := range pubSubCases() {
			t.Run(sizeName(size)+"/"+c.name, func(t *testing.T) {
				if c.skip != nil {
					if why := c.skip(size); why != "" {
						t.Skip(why)
					}
				}
				r := c.run(t, noTimer{}, n, size)
				if r.received != n || r.missed != 0 {
					t.Fatalf("received %d, missed %d; want %d, 0", r.received, r.missed, n)
				}
				if r.elapsed <= 0 {
					t.Fatalf("elapsed %v, want > 0", r.elapsed)
				}
			})
		}
	}
}

func TestRequestFixtures(t *testing.T) {
	defer goleak.VerifyNone(t, zmq4LeakOptions()...)
	for _, c := range latencyCases() {
		t.Run("latency/"+c.name, func(t *testing.T) {
			p50, p99 := measureLatency(t, noTimer{}, c.setup(t)(), 50)
			if p50 <= 0 || p99 < p50 {
				t.Fatalf("p50 %v, p99 %v: want 0 < p50 <= p99", p50, p99)
			}
		})
	}
	for _, c := range concurrentCases() {
		t.Run("concurrent/"+c.name, func(t *testing.T) {
			if d := measureConcurrent(t, noTimer{}, c.setup(t), 200, 8); d <= 0 {
				t.Fatalf("elapsed %v, want > 0", d)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	samples := make([]time.Duration, 100)
	for i := range samples {
		samples[i] = time.Duration(100 - i) // reversed: latencyStats sorts
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p50     time.Duration
		p99     time.Duration
	}{
		{"hundred", samples, 50, 99},
		{"one", []time.Duration{7}, 7, 7},
		{"two", []time.Duration{9, 3}, 3, 9},
		{"empty", nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p50, p99 := latencyStats(append([]time.Duration(nil), tt.samples...))
			if p50 != tt.p50 || p99 != tt.p99 {
				t.Fatalf("p50, p99 = %v, %v; want %v, %v", p50, p99, tt.p50, tt.p99)
			}
		})
	}
}

// TestPacer checks that a publisher is held at most a window (rounded up to
// paceEvery) ahead of its subscriber, moves on as the subscriber reports
// progress, even in jumps, and is released when the subscriber finishes.
func TestPacer(t *testing.T) {
	const window, n = 2 * paceEvery, 10 * paceEvery
	done := make(chan struct{})
	p := newPacer(window, 0, done)
	var sent atomic.Int64
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; i < n; i++ {
			p.wait(context.Background(), i)
			sent.Store(int64(i + 1))
		}
	}()
	waitFor := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for sent.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("publisher stuck at %d, want %d", sent.Load(), want)
			}
			time.Sleep(time.Millisecond) // polling interval, not a wait for a condition
		}
		if got := sent.Load(); got != want {
			t.Fatalf("publisher at %d, want it held at %d", got, want)
		}
	}
	waitFor(window + paceEvery) // nothing consumed: held a window ahead
	p.consumed(0)
	p.consumed(paceEvery / 2) // under the reporting step: no progress
	p.consumed(paceEvery + 3) // a jump past it: progress
	waitFor(4 * paceEvery)    // the first step where it is over a window ahead of paceEvery+3
	close(done)
	<-pubDone
	if sent.Load() != n {
		t.Fatalf("publisher at %d after the subscriber finished, want %d", sent.Load(), n)
	}
}
