package hubbench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// timer is the part of *testing.B a measurement drives; tests pass noTimer,
// so the quick tests and the benchmarks run the same code.
type timer interface {
	ResetTimer()
	StopTimer()
}

type noTimer struct{}

func (noTimer) ResetTimer() {}
func (noTimer) StopTimer()  {}

// publishRun has publishers goroutines publish n fresh events in all, each
// waiting for its acknowledgement before the next, and returns how long
// that took. It stops at the first error, which it returns.
func publishRun(ctx context.Context, tm timer, p *peer, n, publishers int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	tm.ResetTimer()
	start := time.Now()
	for range publishers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				ev, err := newEvent(i)
				if err == nil {
					err = p.publish(ctx, ev)
				}
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("event %d of %d: %w", i, n, err)
						cancel()
					}
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	tm.StopTimer()
	return elapsed, first
}

// latency is what latencyRun measured.
type latency struct {
	samples []time.Duration // publish→deliver of every event, sorted
	rate    float64         // events published per second
}

// percentile returns the p-th percentile (0 < p <= 100) by the
// nearest-rank method.
func (l latency) percentile(p float64) time.Duration {
	if len(l.samples) == 0 {
		return 0
	}
	k := int(float64(len(l.samples))*p/100+0.5) - 1
	return l.samples[min(max(k, 0), len(l.samples)-1)]
}

// Bounds of latencyRun.
const (
	// warmupWait is how long latencyRun waits for the follower to deliver
	// a warm-up event before it publishes another.
	warmupWait = 20 * time.Millisecond
	// readyTimeout bounds the warm-up, and the wait for the last events
	// after the last publish.
	readyTimeout = 30 * time.Second
)

// latencyRun starts p's follower, publishes warm-up events until it
// delivers one (so that it is live), then publishes n events from one
// goroutine on a fixed schedule of rate per second, each waiting for its
// acknowledgement; the rate achieved is lower only if acknowledgements
// take longer than the interval. The latency of an event is from just
// before its publish to its delivery to the follower. Every event must be
// delivered once; anything else delivered is an error.
func latencyRun(ctx context.Context, tm timer, p *peer, n, rate int) (latency, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		warmIDs  = make(map[string]bool)
		sent     = make(map[string]time.Time, n)
		samples  = make([]time.Duration, 0, n)
		stray    error
		warm     = make(chan struct{}, 1)
		all      = make(chan struct{})
		followed = make(chan error, 1)
	)
	got := func(id string) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if t0, ok := sent[id]; ok {
			delete(sent, id)
			samples = append(samples, now.Sub(t0))
			if len(samples) == n {
				close(all)
			}
			return
		}
		if warmIDs[id] {
			select {
			case warm <- struct{}{}:
			default:
			}
			return
		}
		if stray == nil {
			stray = fmt.Errorf("the follower got event %s, which is unknown or was delivered before", id)
		}
	}
	go func() { followed <- p.follow(ctx, got) }()
	fail := func(err error) (latency, error) {
		cancel()
		if ferr := <-followed; ferr != nil {
			err = errors.Join(err, ferr)
		}
		return latency{}, err
	}

	// Warm up.
	deadline := time.Now().Add(readyTimeout)
	wait := time.NewTimer(warmupWait)
	defer wait.Stop()
warmup:
	for {
		ev, err := newEvent(1)
		if err != nil {
			return fail(err)
		}
		mu.Lock()
		warmIDs[ev.ID.String()] = true
		mu.Unlock()
		if err := p.publish(ctx, ev); err != nil {
			return fail(fmt.Errorf("warm-up publish: %w", err))
		}
		wait.Reset(warmupWait)
		select {
		case <-warm:
			break warmup
		case err := <-followed:
			return latency{}, fmt.Errorf("follower ended during the warm-up: %w", err)
		case <-wait.C:
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("the follower delivered none of %d warm-up events in %v", len(warmIDs), readyTimeout))
		}
	}

	// Measure. Event i is due at start + i*interval; a publish that is
	// late (the previous ack came late, or the timer fired late: sub-ms
	// timers on an idle Linux runtime fire up to 1 ms late) goes at once.
	interval := time.Second / time.Duration(rate)
	tm.ResetTimer()
	start := time.Now()
	for i := 1; i <= n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			wait.Reset(d)
			select {
			case <-wait.C:
			case <-ctx.Done():
				return fail(ctx.Err())
			}
		}
		ev, err := newEvent(int64(i))
		if err != nil {
			return fail(err)
		}
		mu.Lock()
		sent[ev.ID.String()] = time.Now()
		mu.Unlock()
		if err := p.publish(ctx, ev); err != nil {
			return fail(fmt.Errorf("event %d of %d: %w", i, n, err))
		}
	}
	published := time.Since(start)
	wait.Reset(readyTimeout)
	select {
	case <-all:
	case err := <-followed:
		return latency{}, fmt.Errorf("follower ended: %w", err)
	case <-wait.C:
		mu.Lock()
		missing := len(sent)
		mu.Unlock()
		return fail(fmt.Errorf("%d of %d events not delivered %v after the last publish", missing, n, readyTimeout))
	}
	tm.StopTimer()
	cancel()
	if err := <-followed; err != nil {
		return latency{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	if stray != nil {
		return latency{}, stray
	}
	slices.Sort(samples)
	return latency{samples: samples, rate: float64(n) / published.Seconds()}, nil
}
