package zmq

import (
	"context"
	"runtime"
	"sync"

	"github.com/go-zeromq/zmq4"
)

// sender owns the sending side of one socket. Records are queued per
// destination and packed into as few packets as the backlog allows: under
// load one packet carries many records, which is what makes small messages
// fast over zmq4 (it pays several syscalls per ZeroMQ message). Only one
// goroutine sends at a time, so sequence numbers follow send order. Whoever
// finds the sender idle may send inline (low latency for replies); otherwise
// the queued records ride with the active sender or the writer goroutine.
type sender struct {
	sock   zmq4.Socket
	router bool
	seal   *sealer

	mu      sync.Mutex
	q       []outRec
	spare   []outRec
	writing bool
	idle    *sync.Cond // signalled when the queue drains
	wake    chan struct{}
}

type outRec struct {
	to  string // routing identity (ROUTER only)
	rec record
}

func newSender(sock zmq4.Socket, router bool, seal *sealer) *sender {
	s := &sender{sock: sock, router: router, seal: seal, wake: make(chan struct{}, 1)}
	s.idle = sync.NewCond(&s.mu)
	return s
}

// push queues records for one destination without sending.
func (s *sender) push(to string, recs ...record) {
	s.mu.Lock()
	for _, r := range recs {
		s.q = append(s.q, outRec{to: to, rec: r})
	}
	s.mu.Unlock()
}

// kick asks the writer goroutine to send what is queued.
func (s *sender) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// flush sends what is queued now, unless another goroutine is sending (it
// will pick the records up). It sends one batch at most: whatever other
// goroutines queue meanwhile goes to the writer goroutine, so a caller
// (say, the broker's reader) is never captured sending for a steady stream
// of producers, which once starved the broker of the credit its subscribers
// were returning.
func (s *sender) flush() {
	s.mu.Lock()
	if s.writing || len(s.q) == 0 {
		s.mu.Unlock()
		return
	}
	s.writing = true
	s.drainLocked(1)
}

// drainLocked sends until the queue is empty, or at most maxBatches batches
// (0: no limit) and then wakes the writer goroutine for the rest. Called
// with mu held and writing set; returns with mu released.
func (s *sender) drainLocked(maxBatches int) {
	for n := 0; len(s.q) > 0; n++ {
		if maxBatches > 0 && n == maxBatches {
			s.writing = false
			s.mu.Unlock()
			s.kick()
			return
		}
		batch := s.q
		s.q, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		s.send(batch)
		clear(batch)
		s.mu.Lock()
		if s.spare == nil {
			s.spare = batch[:0]
		}
	}
	s.writing = false
	s.idle.Broadcast()
	s.mu.Unlock()
}

// run is the writer goroutine.
func (s *sender) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			// Let the goroutines that are about to queue records do so:
			// one packet then carries them all.
			runtime.Gosched()
			s.mu.Lock()
			if s.writing || len(s.q) == 0 {
				s.mu.Unlock()
				continue
			}
			s.writing = true
			s.drainLocked(0)
		}
	}
}

// waitIdle blocks until the writer goroutine has sent everything queued, or
// until ctx ends. It never sends itself: a Send may block.
func (s *sender) waitIdle(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.idle.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	for (s.writing || len(s.q) > 0) && ctx.Err() == nil {
		s.kick()
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// send packs batch into packets per destination, in order, and sends them.
// zmq4 reports no delivery: loss is detected end to end by the protocol.
func (s *sender) send(batch []outRec) {
	for len(batch) > 0 {
		to := batch[0].to
		var recs []record
		size := 0
		i := 0
		rest := batch[:0:0]
		for ; i < len(batch); i++ {
			r := batch[i]
			if r.to != to {
				rest = append(rest, r)
				continue
			}
			if len(recs) > 0 && size+len(r.rec.body) > batchTarget {
				s.sendPacket(to, recs)
				recs, size = recs[:0], 0
			}
			recs = append(recs, r.rec)
			size += len(r.rec.body) + recHeaderLen
		}
		s.sendPacket(to, recs)
		batch = rest
	}
}

func (s *sender) sendPacket(to string, recs []record) {
	p, seq := s.seal.seal(recs)
	for _, r := range recs {
		if r.sent != nil {
			r.sent.Store(seq)
		}
	}
	var msg zmq4.Msg
	if s.router {
		msg = zmq4.NewMsgFrom([]byte(to), p)
	} else {
		msg = zmq4.NewMsg(p)
	}
	_ = s.sock.Send(msg)
}
