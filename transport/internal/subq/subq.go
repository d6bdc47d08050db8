// Package subq is a subscription's bounded message queue with explicit gaps.
//
// Both transport implementations hand every delivery to a Queue, so the
// contract's "loss is never silent" rule lives in one place: when the queue
// is full the new message is dropped and counted, and the consumer later sees
// the queued messages, then one *transport.MissedError with the count, then
// the messages that came after the gap.
package subq

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/zeroci/zeroci/transport"
)

// minCap is the producers' slice's first allocation. It grows by doubling up
// to the bound, so an idle subscription costs a few hundred bytes, not bound
// slots. (A busy one holds at most two slices of bound slots: the producers'
// and the consumer's current batch.)
const minCap = 8

// spinTries is how many times Next yields before parking on an empty queue.
const spinTries = 4

// slot is one queued message and the gap (missed messages) just before it.
type slot struct {
	msg    transport.Message
	gap    uint64 // merged gap count; 0 means unknown (only meaningful with hasGap)
	hasGap bool
}

// Queue is a bounded FIFO of transport.Message with gap markers.
//
// Safe for one consumer (Next, TryNext) and many producers (Push, PushGap);
// Len, Dropped and Close may be called from any goroutine.
//
// Producers append to in under mu. The consumer swaps in for its private out
// slice when out is used up, so it takes the lock once per batch rather than
// once per message. Queued messages are counted exactly (pushed - consumed),
// whichever of the two slices holds them.
type Queue struct {
	// Read-only after New, or rarely written.
	bound    int
	notify   chan struct{} // capacity 1: wakes a blocked consumer
	done     chan struct{} // closed by Close
	isClosed atomic.Bool   // closed, readable without mu

	// The consumer loads isClosed on every message; producers write mu on
	// every push. Sharing a cache line cost 8% of the CPU (measured).
	_ [64]byte

	// Producer side, guarded by mu.
	mu       sync.Mutex
	in       []slot
	tailGap  bool          // a gap after the newest message (or in an empty queue)
	tailN    uint64        // its count, 0 = unknown
	closed   bool          // isClosed, under mu
	waiting  bool          // the consumer is (about to be) blocked in Next
	seenCons uint64        // a past value of consumed: queued ≤ pushed - seenCons
	pushed   atomic.Uint64 // messages accepted; written under mu, read by Len
	dropped  atomic.Uint64

	_ [64]byte // keep the consumer's fields off the producers' cache line

	// Consumer side: touched only by the consumer goroutine, except consumed
	// (read by producers when the queue looks full, and by Len).
	consumed atomic.Uint64 // messages handed out by Next/TryNext
	out      []slot
	outPos   int
	_        [64]byte
}

// New returns an empty queue that holds at most bound messages; a bound
// below 1 is taken as 1. Gaps do not count against the bound. Nothing is
// preallocated: the buffer grows by doubling up to bound as messages queue up.
func New(bound int) *Queue {
	if bound < 1 {
		bound = 1
	}
	return &Queue{
		bound:  bound,
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// mergeGap combines two gap counts; an unknown count (0) absorbs the other.
func mergeGap(a, b uint64) uint64 {
	if a == 0 || b == 0 {
		return 0
	}
	if s := a + b; s > a {
		return s
	}
	return ^uint64(0) // saturate rather than wrap to "unknown"
}

// Push appends m. It never blocks. When bound messages are already queued it
// drops m, counts it in Dropped and adds one to the gap at the tail, and
// returns false. After Close it returns false without counting. The queue
// keeps m.Data as is: the caller must not modify it afterwards.
func (q *Queue) Push(m transport.Message) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	pushed := q.pushed.Load()
	if pushed-q.seenCons >= uint64(q.bound) {
		// Looks full with the last known consumer position: refresh it
		// (only then, so producers rarely touch the consumer's cache line).
		q.seenCons = q.consumed.Load()
	}
	if pushed-q.seenCons >= uint64(q.bound) {
		q.dropped.Add(1)
		if q.tailGap {
			q.tailN = mergeGap(q.tailN, 1)
		} else {
			q.tailGap, q.tailN = true, 1
		}
		q.mu.Unlock()
		return false
	}
	if len(q.in) == cap(q.in) {
		q.grow()
	}
	q.in = append(q.in, slot{msg: m, gap: q.tailN, hasGap: q.tailGap})
	q.tailGap, q.tailN = false, 0
	q.pushed.Store(pushed + 1)
	wake := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if wake {
		q.wake()
	}
	return true
}

// grow doubles in's capacity, capped at bound. Called with mu held.
func (q *Queue) grow() {
	c := 2 * cap(q.in)
	if c < minCap {
		c = minCap
	}
	if c > q.bound {
		c = q.bound
	}
	if c <= len(q.in) { // cannot happen while the bound holds; stay correct anyway
		c = len(q.in) + 1
	}
	nb := make([]slot, len(q.in), c)
	copy(nb, q.in)
	q.in = nb
}

// PushGap records n missed messages (0 = unknown count) at the tail, merged
// with a gap already there. It never blocks; after Close it does nothing.
func (q *Queue) PushGap(n uint64) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.tailGap {
		q.tailN = mergeGap(q.tailN, n)
	} else {
		q.tailGap, q.tailN = true, n
	}
	wake := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if wake {
		q.wake()
	}
}

// wake signals the consumer without blocking; a token already pending is
// enough, since the consumer re-checks the queue after every wake-up.
func (q *Queue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take returns the next entry of the consumer's private batch, if any.
// Consumer only, without mu.
func (q *Queue) take() (transport.Message, error, bool) {
	if q.isClosed.Load() {
		q.out, q.outPos = nil, 0
		return transport.Message{}, transport.ErrClosed, true
	}
	if q.outPos == len(q.out) {
		return transport.Message{}, nil, false
	}
	s := &q.out[q.outPos]
	if s.hasGap {
		s.hasGap = false
		return transport.Message{}, &transport.MissedError{Count: s.gap}, true
	}
	m := s.msg
	*s = slot{} // release Data for the collector
	q.outPos++
	q.consumed.Add(1)
	return m, nil, true
}

// refill moves the producers' slice to the consumer, or reports a gap at the
// tail of an empty queue. It sets waiting when there is nothing at all.
// Consumer only, with mu held; the private batch must be used up.
func (q *Queue) refill(setWaiting bool) (error, bool) {
	if q.closed {
		return transport.ErrClosed, true
	}
	if len(q.in) > 0 {
		q.out, q.in = q.in, q.out[:0]
		q.outPos = 0
		return nil, true
	}
	if q.tailGap {
		c := q.tailN
		q.tailGap, q.tailN = false, 0
		return &transport.MissedError{Count: c}, true
	}
	if setWaiting {
		q.waiting = true
	}
	return nil, false
}

// poll is one non-blocking attempt: ok reports whether m/err is a result.
func (q *Queue) poll(setWaiting bool) (transport.Message, error, bool) {
	if m, err, ok := q.take(); ok {
		return m, err, true
	}
	q.mu.Lock()
	err, ok := q.refill(setWaiting)
	q.mu.Unlock()
	if !ok {
		return transport.Message{}, nil, false
	}
	if err != nil {
		if err == transport.ErrClosed {
			q.out, q.outPos = nil, 0
		}
		return transport.Message{}, err, true
	}
	return q.take()
}

// Next returns the next message, blocking until one is queued. It returns a
// *transport.MissedError once per gap, at its place in the stream. After
// Close it returns transport.ErrClosed at once, even if messages were still
// queued (they are discarded). When ctx ends while Next is blocked it returns
// ctx.Err(); a message that is already queued is returned even if ctx has
// ended. For one consumer goroutine only.
func (q *Queue) Next(ctx context.Context) (transport.Message, error) {
	for spin := 0; ; spin++ {
		if spin < spinTries {
			// Empty: yield a few times before parking, as a producer is
			// often about to push; parking and waking cost more.
			if m, err, ok := q.poll(false); ok {
				return m, err
			}
			runtime.Gosched()
			continue
		}
		if m, err, ok := q.poll(true); ok {
			return m, err
		}
		select {
		case <-q.notify:
		case <-q.done:
		case <-ctx.Done():
			if m, err, ok := q.poll(false); ok {
				return m, err
			}
			q.mu.Lock()
			q.waiting = false
			q.mu.Unlock()
			return transport.Message{}, ctx.Err()
		}
	}
}

// TryNext is Next without blocking: ok is false when nothing is queued. After
// Close it returns transport.ErrClosed with ok true. For one consumer
// goroutine only.
func (q *Queue) TryNext() (transport.Message, error, bool) {
	return q.poll(false)
}

// Len is the number of queued messages (gaps are not counted).
func (q *Queue) Len() int {
	if q.isClosed.Load() {
		return 0
	}
	c := q.consumed.Load() // before pushed: consumed never passes pushed
	return int(q.pushed.Load() - c)
}

// Dropped is the number of messages Push dropped because the queue was full.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Close discards queued messages, makes Next and TryNext return
// transport.ErrClosed and unblocks a waiting Next. Idempotent. Messages in
// the consumer's current batch are released by its next Next or TryNext.
func (q *Queue) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.isClosed.Store(true)
	q.in = nil
	q.tailGap, q.tailN = false, 0
	q.mu.Unlock()
	close(q.done)
}
