package zmq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/internal/subq"
)

// dealerSendTimeout bounds how long a Send waits for the first connection;
// what it drops is resent when the broker welcomes the link.
const dealerSendTimeout = 2 * time.Second

// link is this node's connection to a broker it does not host: one DEALER
// socket dialled to exactly one ROUTER, reconnecting forever.
type link struct {
	n    *Node
	ep   string
	sock zmq4.Socket
	out  *sender
	open *opener
	done chan struct{} // closed by close
	recs []rawRec      // the reader goroutine's scratch space

	mu       sync.Mutex
	closed   bool
	up       atomic.Bool // heard from the broker within the heartbeat timeout
	welcomed bool        // the broker has welcomed us at least once
	lastRecv time.Time

	reqSeq uint64
	calls  map[uint64]*call

	subs    map[uint32]*linkSub
	workers map[uint32]*linkWorker
	running map[uint64]*runningJob // jobs of local replicas, by broker job id

	pubSeq       uint64
	unacked      []pubRec   // sent, not yet acknowledged, in order
	unackedBytes int        // sum of their body sizes
	acked        *sync.Cond // signalled when acknowledgements free window room or on close
}

type call struct {
	id         uint64
	body       []byte // the kReq body, kept for a resend
	idempotent bool
	attempts   int
	sentSeq    atomic.Uint64 // packet that carried it; 0 while queued
	ch         chan reply
}

type pubRec struct {
	seq  uint64
	body []byte
}

func newLink(n *Node, ep string) *link {
	sock := zmq4.NewDealer(n.ctx,
		zmq4.WithDialerRetry(100*time.Millisecond),
		zmq4.WithDialerMaxRetries(-1),
		zmq4.WithAutomaticReconnect(true),
		zmq4.WithTimeout(dealerSendTimeout),
		zmq4.WithLogger(zmqLogger(n)),
	)
	guard := newReplayGuard()
	l := &link{
		n: n, ep: ep, sock: sock,
		out:     newSender(sock, false, newSealer(n.cfg.Key, newSessionID())),
		open:    newOpener(n.cfg.Key, guard),
		done:    make(chan struct{}),
		calls:   make(map[uint64]*call),
		subs:    make(map[uint32]*linkSub),
		workers: make(map[uint32]*linkWorker),
		running: make(map[uint64]*runningJob),
	}
	l.acked = sync.NewCond(&l.mu)
	l.out.push("", record{kind: kPing})
	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		// Dial returns once connected (it retries forever) or closed.
		if err := sock.Dial(internalEndpoint(ep)); err != nil && n.ctx.Err() == nil {
			n.log.Warn().Err(err).Str("endpoint", ep).Msg("zmq: dial")
		}
	}()
	go func() { defer n.wg.Done(); l.out.run(n.ctx) }()
	go func() { defer n.wg.Done(); l.read() }()
	l.out.kick()
	return l
}

func (l *link) read() {
	for {
		msg, err := l.sock.Recv()
		if err != nil {
			select {
			case <-l.done: // the socket is closed: every Recv fails now
				return
			case <-l.n.ctx.Done():
				return
			default:
				continue // a lost connection, reported once; zmq4 redials
			}
		}
		if len(msg.Frames) != 1 {
			l.n.stats.malformed.Add(1)
			continue
		}
		pk, err := l.open.open(msg.Frames[0])
		if err != nil {
			l.n.countDrop(err)
			continue
		}
		l.handle(pk)
	}
}

func (l *link) handle(pk packet) {
	recs, ok := splitRecords(l.recs[:0], pk.records)
	l.recs = recs
	if !ok {
		l.n.stats.malformed.Add(1)
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.lastRecv = time.Now()
	l.up.Store(true)
	for _, r := range recs {
		if !l.applyLocked(r.kind, r.body) {
			l.n.stats.malformed.Add(1)
		}
	}
	l.mu.Unlock()
	l.flush()
}

func (l *link) applyLocked(kind byte, body []byte) bool {
	r := newRd(body)
	switch kind {
	case kPong:
	case kWelcome:
		first := r.u64()
		if !r.ok {
			return false
		}
		l.resyncLocked(first)
	case kSubAck:
		id := r.u32()
		if !r.ok {
			return false
		}
		if s := l.subs[id]; s != nil {
			s.ackOnce.Do(func() { close(s.acked) })
		}
	case kPubAck:
		seq := r.u64()
		if !r.ok {
			return false
		}
		k := 0
		for k < len(l.unacked) && l.unacked[k].seq <= seq {
			l.unackedBytes -= len(l.unacked[k].body)
			k++
		}
		if k > 0 {
			clear(l.unacked[:k]) // release the bodies
			l.unacked = l.unacked[k:]
			if len(l.unacked) == 0 {
				l.unacked = l.unacked[:0:0]
			}
			l.acked.Broadcast()
		}
	case kMsg:
		id, tl := r.u32(), r.u16()
		topic := string(r.bytes(int(tl)))
		if !r.ok {
			return false
		}
		if s := l.subs[id]; s != nil {
			if s.q.Push(transport.Message{Topic: topic, Data: r.rest()}) {
				l.n.stats.delivered.Add(1)
			} else {
				l.n.stats.dropped.Add(1)
			}
		}
	case kGap:
		id, n := r.u32(), r.u64()
		if !r.ok {
			return false
		}
		if s := l.subs[id]; s != nil {
			s.q.PushGap(n)
		}
	case kRep:
		id, st := r.u64(), r.u8()
		if !r.ok {
			return false
		}
		if c := l.calls[id]; c != nil {
			delete(l.calls, id)
			c.ch <- reply{status: st, data: r.rest()}
		}
	case kReadyAck:
		id := r.u32()
		if !r.ok {
			return false
		}
		if w := l.workers[id]; w != nil {
			w.ackOnce.Do(func() { close(w.acked) })
		}
	case kJob:
		jid, wid, dl := r.u64(), r.u32(), int64(r.u64())
		if !r.ok {
			return false
		}
		w := l.workers[wid]
		if w == nil {
			l.out.push("", record{kind: kDone, body: doneBody(jid, stLost, nil)})
			return true
		}
		ctx := w.ctx
		var cancel context.CancelFunc
		if dl != 0 {
			ctx, cancel = context.WithDeadline(ctx, time.Unix(0, dl))
		} else {
			ctx, cancel = context.WithCancel(ctx)
		}
		rj := &runningJob{cancel: cancel}
		l.running[jid] = rj
		l.n.wg.Add(1)
		go w.run(ctx, rj, jid, r.rest())
	case kAbort:
		jid := r.u64()
		if !r.ok {
			return false
		}
		if rj := l.running[jid]; rj != nil {
			rj.cancel()
		}
	default:
		return false
	}
	return true
}

// resyncLocked runs when the broker has no state for us: on the first
// contact, after it restarted, or after it expired us. first is the first
// packet of ours it saw; requests carried by earlier packets were either
// never received (first contact) or received by a broker that is gone.
func (l *link) resyncLocked(first uint64) {
	again := l.welcomed
	l.welcomed = true
	for id, c := range l.calls {
		s := c.sentSeq.Load()
		if s == 0 || s >= first {
			continue // queued, or received by this broker
		}
		if !again || (c.idempotent && c.attempts < 2) {
			c.attempts++
			c.sentSeq.Store(0)
			l.out.push("", record{kind: kReq, body: c.body, sent: &c.sentSeq})
			continue
		}
		delete(l.calls, id)
		c.ch <- reply{status: stLost}
	}
	// Registrations this broker saw (or will see: still queued) stand;
	// the others are made again.
	lost := func(sent *atomic.Uint64) bool {
		s := sent.Load()
		if s == 0 || s >= first {
			return false
		}
		sent.Store(0)
		return true
	}
	for _, s := range l.subs {
		if !lost(&s.sentSeq) {
			continue
		}
		if again {
			s.q.PushGap(0) // what was published while it was unregistered
		}
		s.consumed.Store(0)
		l.out.push("", record{kind: kSub, body: subBody(s.id, s.credit(), s.prefix), sent: &s.sentSeq})
	}
	for _, w := range l.workers {
		if lost(&w.sentSeq) {
			l.out.push("", record{kind: kReady, body: readyBody(w.id, w.concurrency, w.svc), sent: &w.sentSeq})
		}
	}
	for _, p := range l.unacked {
		l.out.push("", record{kind: kPub, body: p.body})
	}
}

// tick sends a heartbeat and notices a silent broker.
func (l *link) tick(now time.Time) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	if l.up.Load() && now.Sub(l.lastRecv) > l.n.cfg.HeartbeatTimeout {
		l.up.Store(false)
		l.n.log.Warn().Str("endpoint", l.ep).Msg("zmq: broker silent, in-flight requests lost")
		for id, c := range l.calls {
			if c.sentSeq.Load() != 0 && !c.idempotent {
				delete(l.calls, id)
				c.ch <- reply{status: stLost}
			}
		}
	}
	l.mu.Unlock()
	l.open.guard.sweep(now)
	l.out.push("", record{kind: kPing})
	l.out.kick()
}

// publish queues one publication. It blocks while the link's window is
// full: PublishWindow messages or PublishWindowBytes bytes sent and not yet
// acknowledged (one message over the byte bound may go when nothing else is
// outstanding).
func (l *link) publish(ctx context.Context, topic string, data []byte) error {
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.acked.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	size := 10 + len(topic) + len(data)
	l.mu.Lock()
	for !l.closed && ctx.Err() == nil && len(l.unacked) > 0 &&
		(len(l.unacked) >= l.n.cfg.PublishWindow || l.unackedBytes+size > l.n.cfg.PublishWindowBytes) {
		l.acked.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return transport.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return err
	}
	l.pubSeq++
	body := topicDataBody(u64Body(l.pubSeq), topic, data)
	l.unacked = append(l.unacked, pubRec{seq: l.pubSeq, body: body})
	l.unackedBytes += len(body)
	l.out.push("", record{kind: kPub, body: body})
	l.mu.Unlock()
	l.out.kick()
	return nil
}

func (l *link) request(ctx context.Context, svc string, data []byte, idempotent bool) ([]byte, error) {
	var dl int64
	if d, ok := ctx.Deadline(); ok {
		dl = d.UnixNano()
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, transport.ErrClosed
	}
	l.reqSeq++
	body := binary.BigEndian.AppendUint64(make([]byte, 0, 18+len(svc)+len(data)), l.reqSeq)
	body = binary.BigEndian.AppendUint64(body, uint64(dl))
	var flags byte
	if idempotent {
		flags |= flagIdempotent
	}
	body = append(body, flags, byte(len(svc)))
	body = append(body, svc...)
	body = append(body, data...)
	c := &call{id: l.reqSeq, body: body, idempotent: idempotent, attempts: 1, ch: make(chan reply, 1)}
	l.calls[c.id] = c
	l.out.push("", record{kind: kReq, body: body, sent: &c.sentSeq})
	busy := len(l.calls) > 1
	l.mu.Unlock()
	if busy {
		// Other requests are in flight: the writer goroutine batches this
		// one with theirs. Alone, it goes out now, for latency.
		l.out.kick()
	} else {
		l.flush()
	}

	select {
	case r := <-c.ch:
		if pastDeadline(ctx) {
			return nil, transport.CtxError(ctx, svc) // the reply came too late
		}
		return replyResult(svc, r.status, r.data)
	case <-ctx.Done():
		l.mu.Lock()
		delete(l.calls, c.id)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) && !l.closed {
			// The replica's handler sees its deadline by itself; a plain
			// cancel must be carried to it.
			l.out.push("", record{kind: kCancel, body: u64Body(c.id)})
		}
		l.mu.Unlock()
		l.out.kick()
		return nil, transport.CtxError(ctx, svc)
	case <-l.done:
		return nil, transport.ErrClosed
	}
}

// linkSub is a subscription held at a remote broker. The broker sends it no
// more messages than its queue has room for (credit) and reports the rest as
// a gap; consumed messages are returned as credit in batches.
type linkSub struct {
	l        *link
	id       uint32
	prefix   string
	q        *subq.Queue
	bound    int
	consumed atomic.Uint32
	sentSeq  atomic.Uint64 // packet that carried its kSub
	acked    chan struct{}
	ackOnce  sync.Once
	once     sync.Once
}

// credit is the room left in the queue.
func (s *linkSub) credit() uint32 { return uint32(max(0, s.bound-s.q.Len())) }

func subBody(id, credit uint32, prefix string) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	b = binary.BigEndian.AppendUint32(b, credit)
	return append(b, prefix...)
}

func (l *link) subscribe(ctx context.Context, prefix string, bound int) (transport.Subscription, error) {
	s := &linkSub{l: l, id: l.n.subSeq.Add(1), prefix: prefix, q: subq.New(bound), bound: bound, acked: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, transport.ErrClosed
	}
	l.subs[s.id] = s
	l.out.push("", record{kind: kSub, body: subBody(s.id, uint32(bound), prefix), sent: &s.sentSeq})
	l.mu.Unlock()
	l.flush()
	select {
	case <-s.acked:
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("zmq: subscribe %q at %s: %w", prefix, l.ep, ctx.Err())
	case <-l.done:
		return nil, transport.ErrClosed
	}
}

func (s *linkSub) Next(ctx context.Context) (transport.Message, error) {
	m, err := s.q.Next(ctx)
	if err != nil {
		return m, err
	}
	threshold := uint32(max(1, s.bound/4))
	if c := s.consumed.Add(1); c >= threshold && s.consumed.CompareAndSwap(c, 0) {
		body := binary.BigEndian.AppendUint32(nil, s.id)
		body = binary.BigEndian.AppendUint32(body, c)
		s.l.out.push("", record{kind: kCredit, body: body})
		s.l.out.kick()
	}
	return m, nil
}

func (s *linkSub) Close() error {
	s.once.Do(func() {
		l := s.l
		l.mu.Lock()
		if l.subs[s.id] == s {
			delete(l.subs, s.id)
			if !l.closed {
				l.out.push("", record{kind: kUnsub, body: u32Body(s.id)})
			}
		}
		l.mu.Unlock()
		l.out.kick()
		s.q.Close()
	})
	return nil
}

// linkWorker is a replica registered at a remote broker.
type linkWorker struct {
	l           *link
	id          uint32
	svc         string
	h           transport.Handler
	concurrency uint32
	sentSeq     atomic.Uint64 // packet that carried its kReady
	ctx         context.Context
	cancel      context.CancelFunc
	acked       chan struct{}
	ackOnce     sync.Once
	once        sync.Once
}

func readyBody(id, concurrency uint32, svc string) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	b = binary.BigEndian.AppendUint32(b, concurrency)
	return append(b, svc...)
}

func doneBody(jid uint64, st byte, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(data)), jid)
	b = append(b, st)
	return append(b, data...)
}

// serve registers a replica. It waits for the broker's acknowledgement up
// to the heartbeat timeout; a broker that is not up yet gets the
// registration when it comes up.
func (l *link) serve(svc string, h transport.Handler, concurrency int) transport.Service {
	ctx, cancel := context.WithCancel(l.n.ctx)
	w := &linkWorker{l: l, id: l.n.workerSeq.Add(1), svc: svc, h: h, concurrency: uint32(concurrency),
		ctx: ctx, cancel: cancel, acked: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		cancel()
		return w
	}
	l.workers[w.id] = w
	l.out.push("", record{kind: kReady, body: readyBody(w.id, w.concurrency, svc), sent: &w.sentSeq})
	l.mu.Unlock()
	l.flush()
	t := time.NewTimer(l.n.cfg.HeartbeatTimeout)
	defer t.Stop()
	select {
	case <-w.acked:
	case <-t.C:
		l.n.log.Warn().Str("service", svc).Str("endpoint", l.ep).Msg("zmq: broker not reachable yet; the replica registers when it is")
	case <-l.done:
	}
	return w
}

// runningJob is a job a local replica is handling for the broker.
type runningJob struct{ cancel context.CancelFunc }

func (w *linkWorker) run(ctx context.Context, rj *runningJob, jid uint64, data []byte) {
	defer w.l.n.wg.Done()
	st, out := callHandler(ctx, w.h, data)
	rj.cancel()
	w.l.mu.Lock()
	if w.l.running[jid] == rj { // a restarted broker may reuse job ids
		delete(w.l.running, jid)
	}
	w.l.mu.Unlock()
	w.l.n.stats.served.Add(1)
	if w.ctx.Err() != nil {
		return // unregistered: the broker has settled this job already
	}
	w.l.out.push("", record{kind: kDone, body: doneBody(jid, st, out)})
	w.l.flush()
}

func (w *linkWorker) Close() error {
	w.once.Do(func() {
		l := w.l
		l.mu.Lock()
		if l.workers[w.id] == w {
			delete(l.workers, w.id)
			if !l.closed {
				l.out.push("", record{kind: kUnready, body: u32Body(w.id)})
			}
		}
		l.mu.Unlock()
		w.cancel()
		l.flush()
	})
	return nil
}

// close flushes publishes already accepted (until deadline), says goodbye
// and ends every call, subscription and replica of the link.
func (l *link) close(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.acked.Broadcast()
		l.mu.Unlock()
	})
	l.mu.Lock()
	for len(l.unacked) > 0 && ctx.Err() == nil {
		l.out.kick()
		l.acked.Wait()
	}
	stop()
	if len(l.unacked) > 0 {
		l.n.log.Warn().Int("publishes", len(l.unacked)).Str("endpoint", l.ep).Msg("zmq: closing with unacknowledged publishes")
	}
	l.closed = true
	close(l.done)
	l.acked.Broadcast()
	subs, workers := l.subs, l.workers
	l.subs, l.workers, l.calls = nil, nil, nil
	l.out.push("", record{kind: kBye})
	l.mu.Unlock()

	for _, s := range subs {
		s.q.Close()
	}
	for _, w := range workers {
		w.cancel()
	}
	l.out.waitIdle(ctx)
	l.sock.Close()
}

// zmqLogger routes zmq4's own log lines to the node's logger at debug level.
func zmqLogger(n *Node) *log.Logger {
	return log.New(logWriter{n}, "", 0)
}

type logWriter struct{ n *Node }

func (w logWriter) Write(p []byte) (int, error) {
	w.n.log.Debug().Str("component", "zmq4").Msg(string(p))
	return len(p), nil
}

var _ io.Writer = logWriter{}

// flush sends queued records now when the broker is known to be up. zmq4
// blocks a Send until the socket's first connection exists, so while the
// broker has not answered, only the writer goroutine sends.
func (l *link) flush() {
	if l.up.Load() {
		l.out.flush()
		return
	}
	l.out.kick()
}
