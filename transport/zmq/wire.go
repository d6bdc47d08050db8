package zmq

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
	"sync/atomic"
	"time"
)

// Wire format, version 1. Every ZeroMQ message between two nodes is one
// frame (after the ROUTER's identity frame) holding one packet:
//
//	off  size  field
//	0    1     format version (1)
//	1    16    sender session: random per socket instance; a broker's is its epoch
//	17   8     sequence number, big endian, strictly increasing per session
//	25   8     send time, unix nanoseconds, big endian
//	33   n     records: kind (1) | length (4, big endian) | body (length)
//	33+n 32    HMAC-SHA256 over bytes [0, 33+n) with the cluster key
//
// A receiver checks, in order: length, version, MAC (constant time), then
// freshness (send time within replayWindow of its clock, and for a session it
// has not seen, not before its own start minus maxClockSkew) and the sequence
// (greater than the last one accepted from that session). Only then are the
// records parsed; a packet whose records do not parse is dropped whole.
// Record bodies are documented at the kind constants.
const (
	wireVersion  = 1
	headerLen    = 33
	macLen       = sha256.Size
	recHeaderLen = 5

	// maxPacket bounds one packet: the largest payload plus room for its
	// record headers. The connection guard refuses larger ZMTP frames.
	maxPacket = 8<<20 + 64<<10
	// batchTarget is where the writer stops adding records to a packet.
	batchTarget = 128 << 10

	replayWindow = 30 * time.Second
	maxClockSkew = 2 * time.Second
)

// Record kinds. c = client link (DEALER), b = broker (ROUTER), w = a client
// that serves a replica (worker).
const (
	kPing     = 1  // c→b: empty. Heartbeat; the broker answers kPong.
	kPong     = 2  // b→c: empty.
	kWelcome  = 3  // b→c: firstSeq u64. The broker has no state for this session (new or restarted broker, or expired session); firstSeq is the first packet of ours it saw.
	kSub      = 4  // c→b: subID u32 | credit u32 | prefix. (Re)places a subscription.
	kSubAck   = 5  // b→c: subID u32.
	kUnsub    = 6  // c→b: subID u32.
	kCredit   = 7  // c→b: subID u32 | n u32. The subscriber consumed n messages.
	kPub      = 8  // c→b: pubSeq u64 | topicLen u16 | topic | data.
	kPubAck   = 9  // b→c: pubSeq u64, the highest processed.
	kMsg      = 10 // b→c: subID u32 | topicLen u16 | topic | data.
	kGap      = 11 // b→c: subID u32 | count u64 (0: unknown).
	kReq      = 12 // c→b: reqID u64 | deadline i64 (unix ns, 0: none) | flags u8 | svcLen u8 | service | data.
	kRep      = 13 // b→c: reqID u64 | status u8 | data (reply, or error text).
	kReady    = 14 // w→b: workerID u32 | concurrency u32 | service. Registers a replica.
	kReadyAck = 15 // b→w: workerID u32.
	kUnready  = 16 // w→b: workerID u32. The replica is gone; its in-flight jobs are lost.
	kJob      = 17 // b→w: jobID u64 | workerID u32 | deadline i64 | data.
	kDone     = 18 // w→b: jobID u64 | status u8 | data.
	kBye      = 19 // c→b: empty. The node is closing: forget its subscriptions and replicas now.
	kCancel   = 20 // c→b: reqID u64. The caller gave up (not by deadline): cancel the request.
	kAbort    = 21 // b→w: jobID u64. Cancel the job's handler; its result is not wanted.
)

// Reply statuses (kRep, kDone).
const (
	stOK          = 0
	stFailed      = 1 // handler error; data is its message
	stNoResponder = 2
	stLost        = 3
	stTooLarge    = 4 // the reply was over transport.MaxPayload
)

const flagIdempotent = 1

var (
	errShort    = errors.New("zmq: packet too short")
	errVersion  = errors.New("zmq: unknown wire version")
	errMAC      = errors.New("zmq: bad signature")
	errStale    = errors.New("zmq: stale packet")
	errReplay   = errors.New("zmq: replayed packet")
	errMalforms = errors.New("zmq: malformed record")
)

type sessionID [16]byte

func newSessionID() sessionID {
	var s sessionID
	if _, err := rand.Read(s[:]); err != nil {
		panic("zmq: crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	return s
}

// record is one record to send. sent, when set, learns the sequence number
// of the packet that carried it (0 while it is queued): after a broker
// restart, that tells which requests and registrations the new broker saw.
type record struct {
	kind byte
	body []byte
	sent *atomic.Uint64
}

// sealer builds packets for one sending socket. Not safe for concurrent use:
// its owner serialises sends, which also keeps sequence numbers in send order.
type sealer struct {
	session sessionID
	seq     uint64
	mac     hash.Hash
	buf     []byte
}

func newSealer(key []byte, session sessionID) *sealer {
	return &sealer{session: session, mac: hmac.New(sha256.New, key)}
}

// seal packs recs into one packet. It returns a fresh slice (zmq4 may keep
// it after Send returns) and the sequence number used.
func (s *sealer) seal(recs []record) ([]byte, uint64) {
	n := headerLen + macLen
	for _, r := range recs {
		n += recHeaderLen + len(r.body)
	}
	p := make([]byte, headerLen, n)
	s.seq++
	p[0] = wireVersion
	copy(p[1:17], s.session[:])
	binary.BigEndian.PutUint64(p[17:25], s.seq)
	binary.BigEndian.PutUint64(p[25:33], uint64(time.Now().UnixNano()))
	for _, r := range recs {
		p = append(p, r.kind)
		p = binary.BigEndian.AppendUint32(p, uint32(len(r.body)))
		p = append(p, r.body...)
	}
	s.mac.Reset()
	s.mac.Write(p)
	p = s.mac.Sum(p)
	return p, s.seq
}

// packet is a verified packet.
type packet struct {
	session sessionID
	seq     uint64
	records []byte
}

// opener verifies packets for one receiving socket.
type opener struct {
	mac   hash.Hash
	guard *replayGuard
	sum   [macLen]byte
}

func newOpener(key []byte, guard *replayGuard) *opener {
	return &opener{mac: hmac.New(sha256.New, key), guard: guard}
}

// open authenticates p and checks it against replay. Not safe for
// concurrent use.
func (o *opener) open(p []byte) (packet, error) {
	if len(p) < headerLen+macLen {
		return packet{}, errShort
	}
	if p[0] != wireVersion {
		return packet{}, errVersion
	}
	body := p[:len(p)-macLen]
	o.mac.Reset()
	o.mac.Write(body)
	if !hmac.Equal(o.mac.Sum(o.sum[:0]), p[len(p)-macLen:]) {
		return packet{}, errMAC
	}
	var pk packet
	copy(pk.session[:], p[1:17])
	pk.seq = binary.BigEndian.Uint64(p[17:25])
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(p[25:33])))
	if err := o.guard.check(pk.session, pk.seq, sent); err != nil {
		return packet{}, err
	}
	pk.records = body[headerLen:]
	return pk, nil
}

// rawRec is one received record; body aliases the packet.
type rawRec struct {
	kind byte
	body []byte
}

// splitRecords appends the records of a packet body to dst; ok is false if
// they do not parse (the packet is then dropped whole).
func splitRecords(dst []rawRec, b []byte) ([]rawRec, bool) {
	for len(b) > 0 {
		kind, body, rest, err := nextRecord(b)
		if err != nil {
			return dst, false
		}
		dst = append(dst, rawRec{kind, body})
		b = rest
	}
	return dst, true
}

// nextRecord splits the first record off b.
func nextRecord(b []byte) (kind byte, body, rest []byte, err error) {
	if len(b) < recHeaderLen {
		return 0, nil, nil, errMalforms
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(n) > uint64(len(b)-recHeaderLen) {
		return 0, nil, nil, errMalforms
	}
	end := recHeaderLen + int(n)
	return b[0], b[recHeaderLen:end], b[end:], nil
}

// replayGuard remembers, per sender session, the last sequence number
// accepted. Sessions idle longer than the replay window are forgotten: any
// packet of theirs would be stale by then anyway.
type replayGuard struct {
	start time.Time
	mu    sync.Mutex
	last  map[sessionID]*seen
}

type seen struct {
	seq uint64
	at  time.Time
}

func newReplayGuard() *replayGuard {
	return &replayGuard{start: time.Now(), last: make(map[sessionID]*seen)}
}

func (g *replayGuard) check(s sessionID, seq uint64, sent time.Time) error {
	now := time.Now()
	if sent.Before(now.Add(-replayWindow)) || sent.After(now.Add(replayWindow)) {
		return errStale
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.last[s]
	if st == nil {
		// A packet captured before this receiver started, replayed to it,
		// would be from a session it does not know: refuse old send times.
		if sent.Before(g.start.Add(-maxClockSkew)) {
			return errStale
		}
		g.last[s] = &seen{seq: seq, at: now}
		return nil
	}
	if seq <= st.seq {
		return errReplay
	}
	st.seq, st.at = seq, now
	return nil
}

// sweep forgets sessions idle for longer than the replay window.
func (g *replayGuard) sweep(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for s, st := range g.last {
		if now.Sub(st.at) > replayWindow+maxClockSkew {
			delete(g.last, s)
		}
	}
}

// Body encoding helpers. Readers return ok=false on short input.

type rd struct {
	b  []byte
	ok bool
}

func newRd(b []byte) *rd { return &rd{b: b, ok: true} }

func (r *rd) u8() byte {
	if len(r.b) < 1 {
		r.ok = false
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *rd) u16() uint16 {
	if len(r.b) < 2 {
		r.ok = false
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *rd) u32() uint32 {
	if len(r.b) < 4 {
		r.ok = false
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *rd) u64() uint64 {
	if len(r.b) < 8 {
		r.ok = false
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *rd) bytes(n int) []byte {
	if len(r.b) < n {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// rest returns the remaining bytes as a copy the receiver owns.
func (r *rd) rest() []byte {
	v := make([]byte, len(r.b))
	copy(v, r.b)
	r.b = nil
	return v
}

func u32Body(v uint32) []byte { return binary.BigEndian.AppendUint32(make([]byte, 0, 4), v) }
func u64Body(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func topicDataBody(prefix []byte, topic string, data []byte) []byte {
	b := make([]byte, 0, len(prefix)+2+len(topic)+len(data))
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	return append(b, data...)
}
