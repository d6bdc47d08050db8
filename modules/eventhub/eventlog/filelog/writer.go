package filelog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

const (
	// flushBytes: the writer hands its buffer to the file every flushBytes.
	flushBytes = 1 << 20
	// commitBytes: one group commit takes further waiting Appends only
	// while it holds fewer bytes than this, so the first caller's latency
	// stays bounded.
	commitBytes = 16 << 20
)

// appendReq is one Append call waiting for the writer. The caller encodes
// its entries (seq, time and checksum are filled in by the writer), so the
// writer never touches memory the caller may reuse after giving up.
type appendReq struct {
	ids    []string
	frames []byte
	ends   []int // ends[i]: end of entry i's frame in frames

	// Set by the writer before done is closed.
	results []eventlog.Result
	err     error
	done    chan struct{}
}

func newAppendReq(entries []eventlog.Entry) *appendReq {
	size := 0
	for _, e := range entries {
		size += recordLen(e)
	}
	r := &appendReq{
		ids:    make([]string, len(entries)),
		frames: make([]byte, 0, size),
		ends:   make([]int, len(entries)),
		done:   make(chan struct{}),
	}
	for i, e := range entries {
		r.ids[i] = e.ID
		r.frames = appendRecord(r.frames, 0, 0, e)
		r.ends[i] = len(r.frames)
	}
	return r
}

// dedup remembers the IDs of the latest window records.
type dedup struct {
	window int
	seqs   map[string]int64
	order  []idSeq // oldest first
}

type idSeq struct {
	id  string
	seq int64
}

func newDedup(window int) *dedup {
	return &dedup{window: window, seqs: make(map[string]int64)}
}

func (d *dedup) lookup(id string) (int64, bool) {
	seq, ok := d.seqs[id]
	return seq, ok
}

func (d *dedup) add(id string, seq int64) {
	d.seqs[id] = seq
	d.order = append(d.order, idSeq{id, seq})
	if len(d.order) > d.window {
		old := d.order[0]
		d.order[0] = idSeq{}
		d.order = d.order[1:]
		if d.seqs[old.id] == old.seq { // not stored again since
			delete(d.seqs, old.id)
		}
	}
}

// tail is the writer's view of a segment it is appending to in the current
// commit: the counts it will publish once they are fsynced.
type tail struct {
	seg         *segment
	count, size int64
	index       []int64
}

// run is the writer goroutine: it takes every Append waiting, writes them,
// fsyncs once and answers them all (group commit).
func (l *Log) run() {
	defer l.wg.Done()
	var batch []*appendReq
	for {
		var r *appendReq
		select {
		case <-l.quit:
			return
		case r = <-l.reqs:
		}
		batch = append(batch[:0], r)
		size := len(r.frames)
	drain:
		for size < commitBytes {
			select {
			case r = <-l.reqs:
				batch = append(batch, r)
				size += len(r.frames)
			default:
				break drain
			}
		}
		l.commit(batch)
		clear(batch)
	}
}

// commit stores a batch and answers its requests. After a write or fsync
// error the log is failed: what reached the disk is unknown, so it takes no
// more appends until it is reopened (Open truncates a torn tail).
func (l *Log) commit(batch []*appendReq) {
	defer func() {
		for _, r := range batch {
			if r.err != nil {
				r.results = nil
			}
			close(r.done)
		}
	}()
	if err := l.write(batch); err != nil {
		l.failed = fmt.Errorf("filelog: append: %w (the log takes no more appends; reopen it)", err)
	}
	if l.failed != nil {
		for _, r := range batch {
			r.err = l.failed
		}
	}
}

// write assigns sequence numbers, writes and fsyncs a batch, then publishes
// it to readers.
func (l *Log) write(batch []*appendReq) error {
	if l.failed != nil {
		return nil
	}
	now := max(time.Now().UnixNano(), l.lastTime)
	l.mu.RLock()
	t := &tail{}
	if len(l.segs) > 0 {
		s := l.segs[len(l.segs)-1]
		t = &tail{seg: s, count: s.count, size: s.size, index: s.index}
	}
	l.mu.RUnlock()
	touched := []*tail{t}
	first := l.next
	for _, r := range batch {
		r.results = make([]eventlog.Result, len(r.ids))
		start := 0
		for i, id := range r.ids {
			frame := r.frames[start:r.ends[i]]
			start = r.ends[i]
			if seq, ok := l.dedup.lookup(id); ok {
				r.results[i] = eventlog.Result{Seq: seq, Duplicate: true}
				continue
			}
			if t.seg == nil || t.size > 0 && t.size+int64(len(frame)) > l.opts.SegmentBytes {
				var err error
				if t, err = l.rotate(t); err != nil {
					return err
				}
				touched = append(touched, t)
			}
			seq := l.next
			l.next++
			binary.LittleEndian.PutUint64(frame[4:], uint64(seq))
			binary.LittleEndian.PutUint64(frame[12:], uint64(now))
			n := len(frame) - trailerLen
			binary.LittleEndian.PutUint32(frame[n:], crc32.Checksum(frame[:n], castagnoli))
			if t.count%indexEvery == 0 {
				t.index = append(t.index, t.size)
			}
			l.buf = append(l.buf, frame...)
			t.count++
			t.size += int64(len(frame))
			if len(l.buf) >= flushBytes {
				if err := l.flush(t); err != nil {
					return err
				}
			}
			l.dedup.add(id, seq)
			r.results[i] = eventlog.Result{Seq: seq}
		}
	}
	if l.next == first {
		return nil // all duplicates: nothing to write
	}
	if err := l.flush(t); err != nil {
		return err
	}
	if err := l.sync(t.seg); err != nil {
		return err
	}
	l.lastTime = now
	l.mu.Lock()
	for _, t := range touched {
		if t.seg != nil && t.count > t.seg.count {
			t.seg.count, t.seg.size, t.seg.index, t.seg.lastTime = t.count, t.size, t.index, now
		}
	}
	l.head = l.next - 1
	l.mu.Unlock()
	return nil
}

// rotate makes the segment of t durable and starts a new one holding the
// next record.
func (l *Log) rotate(t *tail) (*tail, error) {
	if t.seg != nil {
		if err := l.flush(t); err != nil {
			return nil, err
		}
		if err := l.sync(t.seg); err != nil {
			return nil, err
		}
	}
	s, err := l.createSegment(l.next)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.segs = append(l.segs, s) // empty until published; Close closes it
	l.mu.Unlock()
	return &tail{seg: s}, nil
}

// flush writes the buffered records, which belong to the end of t.
func (l *Log) flush(t *tail) error {
	if len(l.buf) == 0 {
		return nil
	}
	if _, err := t.seg.f.WriteAt(l.buf, t.size-int64(len(l.buf))); err != nil {
		return fmt.Errorf("write %s: %w", t.seg.path, err)
	}
	l.buf = l.buf[:0]
	return nil
}

func (l *Log) sync(s *segment) error {
	l.fsyncs.Add(1)
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.path, err)
	}
	return nil
}
