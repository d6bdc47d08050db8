package subq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/transport"
)

func msg(i int) transport.Message {
	return transport.Message{Topic: "t", Data: []byte(fmt.Sprint(i))}
}

// op is one step of a scripted queue scenario.
type op struct {
	push   int    // push message with this id (when >0)
	gap    uint64 // PushGap(gap) (when isGap)
	isGap  bool
	wantOK bool // expected Push result
}

// entry is what the consumer should see: a message id or a gap count.
type entry struct {
	id     int
	missed bool
	count  uint64
}

func drain(t *testing.T, q *Queue) []entry {
	t.Helper()
	var out []entry
	for {
		m, err, ok := q.TryNext()
		if !ok {
			return out
		}
		var me *transport.MissedError
		switch {
		case errors.As(err, &me):
			if !errors.Is(err, transport.ErrMissed) {
				t.Fatalf("MissedError does not match ErrMissed")
			}
			out = append(out, entry{missed: true, count: me.Count})
		case err != nil:
			t.Fatalf("TryNext: unexpected error %v", err)
		default:
			var id int
			if _, err := fmt.Sscan(string(m.Data), &id); err != nil {
				t.Fatalf("bad data %q", m.Data)
			}
			out = append(out, entry{id: id})
		}
	}
}

func TestScenarios(t *testing.T) {
	p := func(id int, ok bool) op { return op{push: id, wantOK: ok} }
	g := func(n uint64) op { return op{isGap: true, gap: n} }
	m := func(id int) entry { return entry{id: id} }
	x := func(n uint64) entry { return entry{missed: true, count: n} }
	tests := []struct {
		name  string
		bound int
		ops   []op
		want  []entry
	}{
		{"fifo", 4, []op{p(1, true), p(2, true), p(3, true)}, []entry{m(1), m(2), m(3)}},
		{"full drops newest", 3, []op{p(1, true), p(2, true), p(3, true), p(4, false), p(5, false)},
			[]entry{m(1), m(2), m(3), x(2)}},
		{"gap between messages", 4, []op{p(1, true), g(2), p(2, true)}, []entry{m(1), x(2), m(2)}},
		{"gaps merge at tail", 4, []op{g(3), g(2)}, []entry{x(5)}},
		{"unknown absorbs count", 4, []op{g(3), g(0), g(4)}, []entry{x(0)}},
		{"gap merges with drops", 1, []op{p(1, true), g(2), p(2, false)}, []entry{m(1), x(3)}},
		{"drop then unknown", 1, []op{p(1, true), p(2, false), g(0)}, []entry{m(1), x(0)}},
		{"gap on empty queue then message", 2, []op{g(7), p(1, true)}, []entry{x(7), m(1)}},
		{"bound below one is one", 0, []op{p(1, true), p(2, false)}, []entry{m(1), x(1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := New(tc.bound)
			var drops uint64
			for i, o := range tc.ops {
				if o.isGap {
					q.PushGap(o.gap)
					continue
				}
				if got := q.Push(msg(o.push)); got != o.wantOK {
					t.Fatalf("op %d: Push(%d) = %v, want %v", i, o.push, got, o.wantOK)
				}
				if !o.wantOK {
					drops++
				}
			}
			if got := q.Dropped(); got != drops {
				t.Errorf("Dropped() = %d, want %d", got, drops)
			}
			got := drain(t, q)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("consumer saw %v, want %v", got, tc.want)
			}
			if q.Len() != 0 {
				t.Fatalf("Len() = %d after drain", q.Len())
			}
		})
	}
}

// TestModel checks the ring (growth, wrap-around) against a plain slice model
// with random pushes, gaps and pops.
func TestModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed))
		bound := 1 + rng.IntN(40)
		q := New(bound)
		var model []entry // pending entries; a trailing gap is the last entry
		queued := 0
		addGap := func(n uint64) {
			if k := len(model); k > 0 && model[k-1].missed {
				model[k-1].count = mergeGap(model[k-1].count, n)
				return
			}
			model = append(model, entry{missed: true, count: n})
		}
		next := 1
		for step := 0; step < 3000; step++ {
			switch r := rng.IntN(10); {
			case r < 5:
				ok := q.Push(msg(next))
				if want := queued < bound; ok != want {
					t.Fatalf("seed %d step %d: Push = %v, want %v (queued %d bound %d)", seed, step, ok, want, queued, bound)
				}
				if ok {
					model = append(model, entry{id: next})
					queued++
				} else {
					addGap(1)
				}
				next++
			case r < 6:
				n := uint64(rng.IntN(3))
				q.PushGap(n)
				addGap(n)
			default:
				m, err, ok := q.TryNext()
				if len(model) == 0 {
					if ok {
						t.Fatalf("seed %d step %d: TryNext on empty queue returned %v, %v", seed, step, m, err)
					}
					continue
				}
				want := model[0]
				model = model[1:]
				var got entry
				var me *transport.MissedError
				if errors.As(err, &me) {
					got = entry{missed: true, count: me.Count}
				} else if err == nil && ok {
					fmt.Sscan(string(m.Data), &got.id)
					queued--
				} else {
					t.Fatalf("seed %d step %d: TryNext = %v, %v, %v", seed, step, m, err, ok)
				}
				if got != want {
					t.Fatalf("seed %d step %d: got %+v, want %+v", seed, step, got, want)
				}
			}
			if q.Len() != queued {
				t.Fatalf("seed %d step %d: Len = %d, want %d", seed, step, q.Len(), queued)
			}
		}
	}
}

func TestIdleQueueIsSmall(t *testing.T) {
	q := New(transport.DefaultQueueSize)
	if cap(q.in) != 0 {
		t.Fatalf("new queue preallocated %d slots", cap(q.in))
	}
	for i := 0; i < 20; i++ {
		q.Push(msg(i))
	}
	if c := cap(q.in); c != 32 {
		t.Fatalf("after 20 pushes capacity = %d, want 32 (doubling from %d)", c, minCap)
	}
	q = New(5)
	for i := 0; i < 10; i++ {
		q.Push(msg(i))
	}
	if c := cap(q.in); c != 5 {
		t.Fatalf("capacity = %d, want the bound 5", c)
	}
}

func TestNoAllocSteadyState(t *testing.T) {
	q := New(64)
	m := msg(1)
	for i := 0; i < 64; i++ { // grow to full size first
		q.Push(m)
	}
	for q.Len() > 0 {
		q.TryNext()
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		q.Push(m)
		if _, err := q.Next(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Push+Next allocates %.1f times per message", allocs)
	}
}

func TestMissedReportedOnce(t *testing.T) {
	q := New(1)
	q.Push(msg(1))
	q.Push(msg(2))
	ctx := context.Background()
	if _, err := q.Next(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := q.Next(ctx)
	var me *transport.MissedError
	if !errors.As(err, &me) || me.Count != 1 {
		t.Fatalf("Next = %v, want MissedError{1}", err)
	}
	if _, err, ok := q.TryNext(); ok {
		t.Fatalf("gap reported twice: %v", err)
	}
}

func TestPushAfterClose(t *testing.T) {
	q := New(2)
	q.Push(msg(1))
	q.Close()
	q.Close() // idempotent
	if q.Push(msg(2)) {
		t.Fatal("Push after Close = true")
	}
	q.PushGap(3)
	if q.Dropped() != 0 {
		t.Fatalf("Dropped = %d after Close, want 0", q.Dropped())
	}
	if _, err := q.Next(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed (queued messages discarded)", err)
	}
	if _, err, ok := q.TryNext(); !ok || !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("TryNext after Close = %v, %v; want ErrClosed, true", err, ok)
	}
	if q.Len() != 0 {
		t.Fatalf("Len after Close = %d", q.Len())
	}
}

func TestMergeGapSaturates(t *testing.T) {
	if got := mergeGap(^uint64(0)-1, 5); got != ^uint64(0) {
		t.Fatalf("mergeGap overflow = %d", got)
	}
}

func TestNextBlocking(t *testing.T) {
	defer goleak.VerifyNone(t)
	type result struct {
		m   transport.Message
		err error
	}
	tests := []struct {
		name    string
		unblock func(q *Queue, cancel context.CancelFunc)
		check   func(r result) error
	}{
		{"push wakes", func(q *Queue, _ context.CancelFunc) { q.Push(msg(9)) }, func(r result) error {
			if r.err != nil || string(r.m.Data) != "9" {
				return fmt.Errorf("got %q, %v; want message 9", r.m.Data, r.err)
			}
			return nil
		}},
		{"gap wakes", func(q *Queue, _ context.CancelFunc) { q.PushGap(4) }, func(r result) error {
			var me *transport.MissedError
			if !errors.As(r.err, &me) || me.Count != 4 {
				return fmt.Errorf("got %v; want MissedError{4}", r.err)
			}
			return nil
		}},
		{"close unblocks", func(q *Queue, _ context.CancelFunc) { q.Close() }, func(r result) error {
			if !errors.Is(r.err, transport.ErrClosed) {
				return fmt.Errorf("got %v; want ErrClosed", r.err)
			}
			return nil
		}},
		{"ctx cancel", func(_ *Queue, cancel context.CancelFunc) { cancel() }, func(r result) error {
			if !errors.Is(r.err, context.Canceled) {
				return fmt.Errorf("got %v; want context.Canceled", r.err)
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := New(4)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := make(chan result, 1)
			go func() {
				m, err := q.Next(ctx)
				ch <- result{m, err}
			}()
			// Wait until the consumer is parked, so the wake-up path is tested.
			deadline := time.Now().Add(5 * time.Second)
			for {
				q.mu.Lock()
				w := q.waiting
				q.mu.Unlock()
				if w {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("consumer never blocked in Next")
				}
				time.Sleep(time.Millisecond)
			}
			tc.unblock(q, cancel)
			select {
			case r := <-ch:
				if err := tc.check(r); err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Next still blocked 5s after unblocking")
			}
		})
	}
}

func TestNextReturnsQueuedAfterCtxEnd(t *testing.T) {
	q := New(2)
	q.Push(msg(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := q.Next(ctx); err != nil || string(m.Data) != "1" {
		t.Fatalf("Next = %q, %v; want the queued message", m.Data, err)
	}
	if _, err := q.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on empty queue with ended ctx = %v", err)
	}
}

// TestConcurrentProducers: many producers, one consumer; per-producer order
// holds and every message is either received or counted in a gap.
func TestConcurrentProducers(t *testing.T) {
	defer goleak.VerifyNone(t)
	const producers, per = 8, 5000
	for _, bound := range []int{16, producers * per} {
		t.Run(fmt.Sprint("bound=", bound), func(t *testing.T) {
			q := New(bound)
			var wg sync.WaitGroup
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						q.Push(transport.Message{Topic: fmt.Sprint(p), Data: []byte{byte(i), byte(i >> 8)}})
					}
				}()
			}
			last := make([]int, producers)
			for i := range last {
				last[i] = -1
			}
			var got, missed uint64
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for got+missed < producers*per {
				m, err := q.Next(ctx)
				var me *transport.MissedError
				switch {
				case errors.As(err, &me):
					if me.Count == 0 {
						t.Fatal("drop gap with unknown count")
					}
					missed += me.Count
					continue
				case err != nil:
					t.Fatalf("Next after %d messages and %d missed: %v", got, missed, err)
				}
				var p int
				fmt.Sscan(m.Topic, &p)
				i := int(m.Data[0]) | int(m.Data[1])<<8
				if i <= last[p] {
					t.Fatalf("producer %d: message %d after %d", p, i, last[p])
				}
				last[p] = i
				got++
			}
			wg.Wait()
			if missed != q.Dropped() {
				t.Fatalf("missed %d, Dropped() %d", missed, q.Dropped())
			}
			if bound == producers*per && missed != 0 {
				t.Fatalf("bound holds everything but %d were missed", missed)
			}
			if _, err, ok := q.TryNext(); ok {
				t.Fatalf("extra entry after all messages: %v", err)
			}
			q.Close()
		})
	}
}

// BenchmarkQueue and BenchmarkChan: one producer, one consumer, 100-byte
// payloads, the shape of a subscription fed by a publisher. A channel blocks
// the producer when full; the queue would drop instead, so in "lossless" the
// producer yields while the queue is full (every message is delivered, the
// comparison with the channel is like for like), and in "dropping" it pushes
// regardless, reporting delivered msg/s and dropped/op.
func BenchmarkQueue(b *testing.B) {
	for _, lossless := range []bool{true, false} {
		name := "dropping"
		if lossless {
			name = "lossless"
		}
		b.Run(name, func(b *testing.B) {
			q := New(transport.DefaultQueueSize)
			data := make([]byte, 100)
			done := make(chan struct{})
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				defer close(done)
				var seen uint64
				ctx := context.Background()
				for seen < uint64(b.N) {
					_, err := q.Next(ctx)
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
				q.Push(transport.Message{Topic: "t", Data: data})
			}
			<-done
			b.StopTimer()
			delivered := uint64(b.N) - q.Dropped()
			b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "msg/s")
			b.ReportMetric(float64(q.Dropped())/float64(b.N), "dropped/op")
		})
	}
}

func BenchmarkChan(b *testing.B) {
	ch := make(chan transport.Message, transport.DefaultQueueSize)
	data := make([]byte, 100)
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		defer close(done)
		for i := 0; i < b.N; i++ {
			<-ch
		}
	}()
	for i := 0; i < b.N; i++ {
		ch <- transport.Message{Topic: "t", Data: data}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
