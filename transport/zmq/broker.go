package zmq

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/internal/subq"
)

// broker serves one bound endpoint: it fans publications out to
// subscriptions and balances requests over replicas. One goroutine reads the
// ROUTER socket and handles every inbound packet in order, which keeps each
// publisher's order; handlers run in their own goroutines.
type broker struct {
	n     *Node
	addr  string
	sock  zmq4.Socket
	out   *sender
	open  *opener
	guard *replayGuard
	recs  []rawRec // the reader goroutine's scratch space

	mu       sync.Mutex
	closed   bool
	peers    map[string]*peer
	subs     []*bsub
	services map[string]*service
	inflight map[uint64]*job
	jobSeq   uint64
}

type peer struct {
	id       string
	session  sessionID
	lastSeen time.Time
	subs     map[uint32]*bsub
	workers  map[uint32]*replica
	lastPub  uint64
}

// bsub is a subscription as the broker sees it: local (q set) or held by a
// peer, which may receive credit messages before it must be told of a gap.
type bsub struct {
	prefix string
	q      *subq.Queue
	peer   *peer
	id     uint32
	credit uint64
	gap    uint64
}

type service struct {
	name     string
	replicas []*replica
	waiting  []*job
	rr       int
}

type replica struct {
	svc         *service
	concurrency int
	busy        int
	jobs        map[uint64]*job
	dead        bool
	// local replica
	handler transport.Handler
	ctx     context.Context
	cancel  context.CancelFunc
	// remote replica
	peer     *peer
	workerID uint32
}

type job struct {
	id         uint64
	svc        string
	data       []byte
	deadline   time.Time
	idempotent bool
	attempts   int
	replica    *replica
	// the caller: a peer's request, or a local one waiting on reply
	client *peer
	reqID  uint64
	reply  chan reply
	// cancel stops the handler of a job running on a local replica
	cancel context.CancelFunc
}

type reply struct {
	status byte
	data   []byte
}

func newBroker(n *Node, ep string) (*broker, error) {
	sock := zmq4.NewRouter(n.ctx, zmq4.WithTimeout(writeTimeout), zmq4.WithLogger(zmqLogger(n)))
	if err := sock.Listen(internalEndpoint(ep)); err != nil {
		sock.Close()
		return nil, fmt.Errorf("zmq: bind %s: %w", ep, err)
	}
	addr := ep
	if strings.HasPrefix(ep, "tcp://") {
		addr = "tcp://" + sock.Addr().String()
	}
	guard := newReplayGuard()
	b := &broker{
		n: n, addr: addr, sock: sock, guard: guard,
		out:      newSender(sock, true, newSealer(n.cfg.Key, newSessionID())),
		open:     newOpener(n.cfg.Key, guard),
		peers:    make(map[string]*peer),
		services: make(map[string]*service),
		inflight: make(map[uint64]*job),
	}
	n.wg.Add(2)
	go func() { defer n.wg.Done(); b.out.run(n.ctx) }()
	go func() { defer n.wg.Done(); b.read() }()
	return b, nil
}

func (b *broker) read() {
	for {
		msg, err := b.sock.Recv()
		if err != nil {
			if b.n.ctx.Err() != nil || b.isClosed() {
				return // the socket is closed: every Recv fails now
			}
			continue
		}
		if len(msg.Frames) != 2 {
			b.n.stats.malformed.Add(1)
			continue
		}
		pk, err := b.open.open(msg.Frames[1])
		if err != nil {
			b.n.countDrop(err)
			continue
		}
		b.handle(string(msg.Frames[0]), pk)
	}
}

// handle processes one verified packet from the peer with routing id.
func (b *broker) handle(id string, pk packet) {
	// Split the records first: a packet whose framing does not parse is
	// dropped whole; a record whose body does not parse is skipped.
	recs, ok := splitRecords(b.recs[:0], pk.records)
	b.recs = recs
	if !ok {
		b.n.stats.malformed.Add(1)
		return
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	p := b.peers[id]
	if p != nil && p.session != pk.session {
		b.dropPeerLocked(p)
		p = nil
	}
	if p == nil {
		p = &peer{id: id, session: pk.session, subs: make(map[uint32]*bsub), workers: make(map[uint32]*replica)}
		b.peers[id] = p
		b.out.push(id, record{kind: kWelcome, body: u64Body(pk.seq)})
	}
	p.lastSeen = time.Now()
	pubs := false
	for _, r := range recs {
		if !b.applyLocked(p, r.kind, r.body, &pubs) {
			b.n.stats.malformed.Add(1)
		}
	}
	if pubs {
		b.out.push(id, record{kind: kPubAck, body: u64Body(p.lastPub)})
	}
	b.mu.Unlock()
	b.out.flush()
}

// applyLocked applies one record; false means it did not parse.
func (b *broker) applyLocked(p *peer, kind byte, body []byte, pubs *bool) bool {
	r := newRd(body)
	switch kind {
	case kPing:
		b.out.push(p.id, record{kind: kPong})
	case kSub:
		id, credit := r.u32(), r.u32()
		prefix := string(r.b)
		if !r.ok || transport.ValidateName(prefix, true) != nil {
			return false
		}
		s := &bsub{prefix: prefix, peer: p, id: id, credit: uint64(credit)}
		if old := p.subs[id]; old != nil {
			// A repeated subscription (the link re-registered it): keep
			// the drops it has not been told about yet.
			s.gap = old.gap
			b.removeSubLocked(old)
		}
		p.subs[id] = s
		b.subs = append(b.subs, s)
		b.out.push(p.id, record{kind: kSubAck, body: u32Body(id)})
		b.sendGapLocked(s)
	case kUnsub:
		id := r.u32()
		if !r.ok {
			return false
		}
		if s := p.subs[id]; s != nil {
			delete(p.subs, id)
			b.removeSubLocked(s)
		}
	case kCredit:
		id, n := r.u32(), r.u32()
		if !r.ok {
			return false
		}
		if s := p.subs[id]; s != nil {
			s.credit += uint64(n)
			b.sendGapLocked(s)
		}
	case kPub:
		seq, tl := r.u64(), r.u16()
		topic := string(r.bytes(int(tl)))
		if !r.ok || transport.ValidateName(topic, false) != nil {
			return false
		}
		*pubs = true
		if seq <= p.lastPub {
			return true // a resend we already fanned out
		}
		p.lastPub = seq
		b.fanoutLocked(topic, r.b)
	case kReq:
		reqID, dl, flags, sl := r.u64(), int64(r.u64()), r.u8(), r.u8()
		svc := string(r.bytes(int(sl)))
		if !r.ok || transport.ValidateName(svc, false) != nil {
			return false
		}
		j := &job{svc: svc, data: r.rest(), idempotent: flags&flagIdempotent != 0, client: p, reqID: reqID}
		if dl != 0 {
			j.deadline = time.Unix(0, dl)
		}
		b.dispatchLocked(j)
	case kReady:
		wid, conc := r.u32(), r.u32()
		svc := string(r.b)
		if !r.ok || conc == 0 || transport.ValidateName(svc, false) != nil {
			return false
		}
		if old := p.workers[wid]; old != nil && old.svc.name == svc {
			// A repeated registration: the replica and its jobs stand.
			old.concurrency = int(conc)
			b.pumpLocked(old.svc)
			b.out.push(p.id, record{kind: kReadyAck, body: u32Body(wid)})
			return true
		} else if old != nil {
			b.loseReplicaLocked(old)
		}
		rep := &replica{concurrency: int(conc), jobs: make(map[uint64]*job), peer: p, workerID: wid}
		p.workers[wid] = rep
		b.addReplicaLocked(svc, rep)
		b.out.push(p.id, record{kind: kReadyAck, body: u32Body(wid)})
	case kUnready:
		wid := r.u32()
		if !r.ok {
			return false
		}
		if rep := p.workers[wid]; rep != nil {
			delete(p.workers, wid)
			b.loseReplicaLocked(rep)
		}
	case kDone:
		jid, st := r.u64(), r.u8()
		if !r.ok {
			return false
		}
		j := b.inflight[jid]
		if j == nil || j.replica == nil || j.replica.peer != p {
			return true // late result of a job already settled
		}
		b.completeLocked(j, st, r.rest())
	case kCancel:
		reqID := r.u64()
		if !r.ok {
			return false
		}
		b.cancelLocked(p, reqID)
	case kBye:
		b.dropPeerLocked(p)
	default:
		return false
	}
	return true
}

// fanoutLocked delivers one publication to every matching subscription.
func (b *broker) fanoutLocked(topic string, data []byte) {
	var body []byte // shared by remote subscriptions: never mutated after build
	for _, s := range b.subs {
		if !strings.HasPrefix(topic, s.prefix) {
			continue
		}
		if s.q != nil {
			m := transport.Message{Topic: topic, Data: append([]byte(nil), data...)}
			if s.q.Push(m) {
				b.n.stats.delivered.Add(1)
			} else {
				b.n.stats.dropped.Add(1)
			}
			continue
		}
		if s.credit == 0 {
			s.gap++ // its queue is full: the drop is reported to it as a gap
			b.n.stats.dropped.Add(1)
			continue
		}
		b.sendGapLocked(s)
		if body == nil {
			body = topicDataBody(make([]byte, 4), topic, data)
		}
		msg := make([]byte, len(body))
		copy(msg, body)
		binary.BigEndian.PutUint32(msg, s.id)
		b.out.push(s.peer.id, record{kind: kMsg, body: msg})
		s.credit--
	}
	b.out.kick()
}

func (b *broker) sendGapLocked(s *bsub) {
	if s.gap == 0 || s.credit == 0 {
		return
	}
	body := binary.BigEndian.AppendUint32(nil, s.id)
	body = binary.BigEndian.AppendUint64(body, s.gap)
	b.out.push(s.peer.id, record{kind: kGap, body: body})
	s.gap = 0
}

func (b *broker) removeSubLocked(s *bsub) {
	for i, x := range b.subs {
		if x == s {
			b.subs = append(b.subs[:i:i], b.subs[i+1:]...)
			return
		}
	}
}

// dropPeerLocked forgets a peer that left, died or restarted.
func (b *broker) dropPeerLocked(p *peer) {
	for _, s := range p.subs {
		b.removeSubLocked(s)
	}
	for _, r := range p.workers {
		b.loseReplicaLocked(r)
	}
	for _, j := range b.inflight {
		if j.client == p {
			j.client = nil // its reply has nowhere to go
		}
	}
	for _, s := range b.services {
		kept := s.waiting[:0]
		for _, j := range s.waiting {
			if j.client != p {
				kept = append(kept, j)
			}
		}
		s.waiting = kept
	}
	if b.peers[p.id] == p {
		delete(b.peers, p.id)
	}
}

func (b *broker) addReplicaLocked(svc string, r *replica) {
	s := b.services[svc]
	if s == nil {
		s = &service{name: svc}
		b.services[svc] = s
	}
	r.svc = s
	s.replicas = append(s.replicas, r)
	b.pumpLocked(s)
}

// loseReplicaLocked removes a replica; its jobs are retried elsewhere when
// idempotent and reported lost otherwise.
func (b *broker) loseReplicaLocked(r *replica) {
	if r.dead {
		return
	}
	r.dead = true
	if r.cancel != nil {
		r.cancel()
	}
	s := r.svc
	for i, x := range s.replicas {
		if x == r {
			s.replicas = append(s.replicas[:i:i], s.replicas[i+1:]...)
			break
		}
	}
	for id, j := range r.jobs {
		delete(b.inflight, id)
		j.replica = nil
		if j.idempotent && j.attempts < 2 {
			b.dispatchLocked(j)
		} else {
			b.finishLocked(j, stLost, nil)
		}
	}
	r.jobs = nil
}

// dispatchLocked hands j to the least busy live replica, queues it when all
// are busy, or answers "no responder" when there is none.
func (b *broker) dispatchLocked(j *job) {
	s := b.services[j.svc]
	if s == nil || len(s.replicas) == 0 {
		b.finishLocked(j, stNoResponder, nil)
		return
	}
	var best *replica
	n := len(s.replicas)
	for k := 0; k < n; k++ {
		r := s.replicas[(s.rr+k)%n]
		if r.busy < r.concurrency && (best == nil || r.busy < best.busy) {
			best = r
		}
	}
	if best == nil {
		s.waiting = append(s.waiting, j)
		return
	}
	s.rr = (s.rr + 1) % n
	b.assignLocked(j, best)
}

func (b *broker) assignLocked(j *job, r *replica) {
	b.jobSeq++
	j.id = b.jobSeq
	j.attempts++
	j.replica = r
	r.busy++
	r.jobs[j.id] = j
	b.inflight[j.id] = j
	if r.handler != nil {
		ctx := r.ctx
		if !j.deadline.IsZero() {
			ctx, j.cancel = context.WithDeadline(ctx, j.deadline)
		} else {
			ctx, j.cancel = context.WithCancel(ctx)
		}
		b.n.wg.Add(1)
		go b.runLocal(ctx, j.cancel, r, j)
		return
	}
	body := binary.BigEndian.AppendUint64(nil, j.id)
	body = binary.BigEndian.AppendUint32(body, r.workerID)
	var dl int64 // 0: no deadline
	if !j.deadline.IsZero() {
		dl = j.deadline.UnixNano()
	}
	body = binary.BigEndian.AppendUint64(body, uint64(dl))
	body = append(body, j.data...)
	b.out.push(r.peer.id, record{kind: kJob, body: body})
}

// pumpLocked dispatches waiting jobs while replicas have room.
func (b *broker) pumpLocked(s *service) {
	for len(s.waiting) > 0 {
		free := false
		for _, r := range s.replicas {
			if r.busy < r.concurrency {
				free = true
				break
			}
		}
		if !free {
			return
		}
		j := s.waiting[0]
		s.waiting = s.waiting[1:]
		if !j.deadline.IsZero() && time.Now().After(j.deadline) {
			continue // its caller has given up
		}
		b.dispatchLocked(j)
	}
}

// runLocal runs one attempt of j; cancel is that attempt's (j.cancel may
// belong to a retry by the time the handler returns).
func (b *broker) runLocal(ctx context.Context, cancel context.CancelFunc, r *replica, j *job) {
	defer b.n.wg.Done()
	st, out := callHandler(ctx, r.handler, j.data)
	cancel()
	b.n.stats.served.Add(1)
	b.mu.Lock()
	if b.inflight[j.id] == j && j.replica == r {
		b.completeLocked(j, st, out)
	}
	busy := len(b.inflight) > 0
	b.mu.Unlock()
	if busy {
		b.out.kick() // batched with the replies of the other jobs in flight
	} else {
		b.out.flush()
	}
}

// callHandler runs h, turning errors, panics and oversized replies into
// statuses.
func callHandler(ctx context.Context, h transport.Handler, req []byte) (st byte, out []byte) {
	defer func() {
		if v := recover(); v != nil {
			st, out = stFailed, []byte(fmt.Sprintf("handler panicked: %v", v))
		}
	}()
	rep, err := h(ctx, req)
	switch {
	case err != nil:
		return stFailed, []byte(err.Error())
	case len(rep) > transport.MaxPayload:
		return stTooLarge, []byte(fmt.Sprintf("reply of %d bytes is over the %d byte limit", len(rep), transport.MaxPayload))
	}
	return stOK, append([]byte(nil), rep...)
}

func (b *broker) completeLocked(j *job, st byte, data []byte) {
	r := j.replica
	delete(b.inflight, j.id)
	delete(r.jobs, j.id)
	r.busy--
	j.replica = nil
	b.finishLocked(j, st, data)
	b.pumpLocked(r.svc)
}

// finishLocked answers j's caller.
func (b *broker) finishLocked(j *job, st byte, data []byte) {
	if j.reply != nil {
		select {
		case j.reply <- reply{status: st, data: data}:
		default:
		}
		return
	}
	if j.client == nil {
		return
	}
	body := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(data)), j.reqID)
	body = append(body, st)
	body = append(body, data...)
	b.out.push(j.client.id, record{kind: kRep, body: body})
}

// publishLocal publishes from this node to the bus it brokers.
func (b *broker) publishLocal(topic string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return transport.ErrClosed
	}
	b.fanoutLocked(topic, data)
	return nil
}

type localSub struct {
	b    *broker
	s    *bsub
	once sync.Once
}

func (b *broker) subscribeLocal(prefix string, bound int) (transport.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, transport.ErrClosed
	}
	s := &bsub{prefix: prefix, q: subq.New(bound)}
	b.subs = append(b.subs, s)
	return &localSub{b: b, s: s}, nil
}

func (l *localSub) Next(ctx context.Context) (transport.Message, error) { return l.s.q.Next(ctx) }

func (l *localSub) Close() error {
	l.once.Do(func() {
		l.b.mu.Lock()
		l.b.removeSubLocked(l.s)
		l.b.mu.Unlock()
		l.s.q.Close()
	})
	return nil
}

type localService struct {
	b    *broker
	r    *replica
	once sync.Once
}

func (b *broker) serveLocal(svc string, h transport.Handler, concurrency int) transport.Service {
	ctx, cancel := context.WithCancel(b.n.ctx)
	r := &replica{concurrency: concurrency, jobs: make(map[uint64]*job), handler: h, ctx: ctx, cancel: cancel}
	b.mu.Lock()
	if b.closed {
		r.dead = true
		cancel()
	} else {
		b.addReplicaLocked(svc, r)
	}
	b.mu.Unlock()
	b.out.flush()
	return &localService{b: b, r: r}
}

func (s *localService) Close() error {
	s.once.Do(func() {
		s.b.mu.Lock()
		s.b.loseReplicaLocked(s.r)
		s.b.mu.Unlock()
		s.b.out.flush()
	})
	return nil
}

// requestLocal is a request from this node to a service this node brokers.
func (b *broker) requestLocal(ctx context.Context, svc string, data []byte, idempotent bool) ([]byte, error) {
	j := &job{svc: svc, data: append([]byte(nil), data...), idempotent: idempotent, reply: make(chan reply, 1)}
	if dl, ok := ctx.Deadline(); ok {
		j.deadline = dl
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, transport.ErrClosed
	}
	b.dispatchLocked(j)
	b.mu.Unlock()
	b.out.flush()
	select {
	case r := <-j.reply:
		if pastDeadline(ctx) {
			return nil, transport.CtxError(ctx, svc) // the reply came too late
		}
		if r.status == stLost && b.isClosed() {
			return nil, transport.ErrClosed
		}
		return replyResult(svc, r.status, r.data)
	case <-ctx.Done():
		b.mu.Lock()
		b.abandonLocked(j)
		b.mu.Unlock()
		return nil, transport.CtxError(ctx, svc)
	case <-b.n.ctx.Done():
		return nil, transport.ErrClosed
	}
}

// abandonLocked settles a job whose caller gave up: a waiting job is
// dropped, a running one is cancelled (its replica stays busy until the
// handler returns) and its result will go nowhere.
func (b *broker) abandonLocked(j *job) {
	j.client, j.reply = nil, nil
	if j.replica == nil {
		if s := b.services[j.svc]; s != nil {
			for i, x := range s.waiting {
				if x == j {
					s.waiting = append(s.waiting[:i:i], s.waiting[i+1:]...)
					return
				}
			}
		}
		return
	}
	if j.cancel != nil {
		j.cancel()
		return
	}
	b.out.push(j.replica.peer.id, record{kind: kAbort, body: u64Body(j.id)})
}

// cancelLocked abandons the request reqID of peer p, wherever it is.
func (b *broker) cancelLocked(p *peer, reqID uint64) {
	for _, j := range b.inflight {
		if j.client == p && j.reqID == reqID {
			b.abandonLocked(j)
			return
		}
	}
	for _, s := range b.services {
		for _, j := range s.waiting {
			if j.client == p && j.reqID == reqID {
				b.abandonLocked(j)
				return
			}
		}
	}
}

// replyResult maps a reply status to the caller's result.
func replyResult(svc string, st byte, data []byte) ([]byte, error) {
	switch st {
	case stOK:
		return data, nil
	case stFailed, stTooLarge:
		return nil, &transport.RemoteError{Service: svc, Message: string(data)}
	case stNoResponder:
		return nil, fmt.Errorf("%w: %s", transport.ErrNoResponder, svc)
	case stLost:
		return nil, fmt.Errorf("%w: %s", transport.ErrResponderLost, svc)
	}
	return nil, fmt.Errorf("%w: %s: unknown reply status %d", transport.ErrResponderFailed, svc, st)
}

// tick expires silent peers and waiting jobs past their deadline.
func (b *broker) tick(now time.Time) {
	b.guard.sweep(now)
	b.mu.Lock()
	for _, p := range b.peers {
		if now.Sub(p.lastSeen) > b.n.cfg.HeartbeatTimeout {
			b.dropPeerLocked(p)
		}
	}
	for _, s := range b.services {
		kept := s.waiting[:0]
		for _, j := range s.waiting {
			if j.deadline.IsZero() || now.Before(j.deadline) {
				kept = append(kept, j)
			}
		}
		s.waiting = kept
	}
	b.mu.Unlock()
	b.out.flush()
}

// close stops the broker: local callers get ErrClosed (through the node's
// context), remote callers of local replicas get "lost", subscriptions end.
func (b *broker) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	for _, s := range b.services {
		for _, r := range append([]*replica(nil), s.replicas...) {
			if r.handler != nil {
				b.loseReplicaLocked(r)
			}
		}
	}
	for _, s := range b.subs {
		if s.q != nil {
			s.q.Close()
		}
	}
	b.subs = nil
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
	b.out.waitIdle(ctx)
	cancel()
	b.sock.Close()
}

func (b *broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// pastDeadline reports whether ctx has ended or its deadline has passed
// (a timer may fire a little after its deadline).
func pastDeadline(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}
