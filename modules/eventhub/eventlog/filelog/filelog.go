// Package filelog is the embedded event log: segment files in one
// directory, the default backend of eventlog.Log.
//
// # Files
//
// A segment file is named by the sequence number of its first record
// (00000000000000000001.seg) and holds consecutive records, each framed as
// length, seq, time, ID, body and a CRC32C over the whole record (see
// record.go). A new segment starts when the next record would take the
// current one past Options.SegmentBytes; a record larger than that gets a
// segment of its own. The directory is created if needed and fsynced
// whenever a segment is created or removed. Open takes an exclusive flock on
// the directory: a second Open, in this process or another, fails with
// eventlog.ErrLocked until the first Log is closed.
//
// # Writing
//
// One writer goroutine takes every Append waiting, writes their records,
// fsyncs once and then answers them all (group commit), so many concurrent
// appenders share each fsync. Readers see a record only once it is fsynced.
// If a write or fsync fails, the Log takes no more appends (what reached the
// disk is unknown); Close and Open it again.
//
// # Opening and recovery
//
// Open reads every segment once: it checks every record's checksum and
// sequence number, builds each segment's sparse offset index (every 256th
// record) and remembers the IDs of the latest Options.DedupWindow records.
// Its time grows with the log's size; Compact bounds that. A partial or
// checksum-failing record at the end of the last segment (a write torn by a
// crash) is truncated away and reported by Recovered and on Options.Logger;
// it was never acknowledged. A bad record anywhere else, or one followed by
// an intact record, is corruption: Open fails with eventlog.ErrCorrupt and
// changes nothing.
//
// # Memory
//
// The dedup window costs about 100 bytes per remembered 36-byte ID (a
// UUID), the ID included: roughly 100 MiB for the default 1<<20 IDs.
package filelog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/internal/fsutil"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// Defaults of Options.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultDedupWindow  = 1 << 20
)

// maxReadBytes: Read returns fewer records than its limit once their bodies
// add up to this much (always at least one record).
const maxReadBytes = 32 << 20

// Options configure a Log. The zero value means every default.
type Options struct {
	// SegmentBytes is the size at which a new segment file starts.
	// Default 64 MiB. Compact removes whole segments, so this is also the
	// granularity of retention.
	SegmentBytes int64
	// DedupWindow is how many of the latest records' IDs are remembered:
	// appending an ID stored within the window returns its first Seq as a
	// Duplicate; an older ID is stored again. Default 1<<20 (see the
	// package doc for its memory cost).
	DedupWindow int
	// Logger receives recovery reports (a truncated torn tail). The zero
	// value logs nothing.
	Logger zerolog.Logger
}

// Validate checks the options, after defaults.
func (o Options) Validate() error {
	if o.SegmentBytes < 0 {
		return fmt.Errorf("filelog: %w: SegmentBytes %d, want > 0 (0 for the default)", eventlog.ErrInvalid, o.SegmentBytes)
	}
	if o.DedupWindow < 0 {
		return fmt.Errorf("filelog: %w: DedupWindow %d, want > 0 (0 for the default)", eventlog.ErrInvalid, o.DedupWindow)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.DedupWindow == 0 {
		o.DedupWindow = DefaultDedupWindow
	}
	return o
}

// Recovery reports the torn tail Open truncated from the last segment.
type Recovery struct {
	Segment        string // path of the segment file
	At             int64  // offset of the first byte removed: the end of the last good record
	TruncatedBytes int64  // how many bytes were removed
	Head           int64  // the latest sequence number kept
	Reason         string // what was found at At
}

// Log is a file-backed eventlog.Log. Safe for concurrent use.
type Log struct {
	dir      string
	opts     Options
	dirf     *os.File // the open directory: holds the flock, fsynced after creating or removing segments
	recovery *Recovery

	reqs      chan *appendReq // unbuffered: a request is either taken by the writer or not sent
	quit      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	fsyncs    atomic.Int64 // file fsyncs by the writer, for benchmarks

	mu     sync.RWMutex
	segs   []*segment // oldest first; the last is where the writer appends
	head   int64      // latest durable sequence number
	closed bool

	// Owned by the writer goroutine (by Open before it starts).
	next     int64 // sequence number of the next record
	lastTime int64 // time of the latest record, unix ns: record times never go back
	dedup    *dedup
	buf      []byte
	failed   error
}

var _ eventlog.Log = (*Log)(nil)

// Open opens the log in dir, creating dir and an empty log if needed, and
// recovers a torn tail (see the package doc). It fails with
// eventlog.ErrLocked if the log is open elsewhere, eventlog.ErrCorrupt if
// stored data is damaged, and eventlog.ErrInvalid for bad options.
func Open(dir string, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := makeDir(dir); err != nil {
		return nil, fmt.Errorf("filelog: open %s: %w", dir, err)
	}
	dirf, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("filelog: open %s: %w", dir, err)
	}
	if err := lockDir(dirf); err != nil {
		_ = dirf.Close()
		return nil, fmt.Errorf("filelog: open %s: %w", dir, err)
	}
	l := &Log{
		dir:   dir,
		opts:  opts,
		dirf:  dirf,
		reqs:  make(chan *appendReq),
		quit:  make(chan struct{}),
		dedup: newDedup(opts.DedupWindow),
	}
	if err := l.load(); err != nil {
		for _, s := range l.segs {
			_ = s.f.Close()
		}
		_ = dirf.Close()
		return nil, fmt.Errorf("filelog: open %s: %w", dir, err)
	}
	if r := l.recovery; r != nil {
		opts.Logger.Warn().Str("segment", r.Segment).Int64("at", r.At).Int64("truncated_bytes", r.TruncatedBytes).
			Int64("head", r.Head).Str("reason", r.Reason).Msg("filelog: truncated a torn tail")
	}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// makeDir creates dir if it does not exist, and makes its entry durable.
func makeDir(dir string) error {
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(filepath.Clean(dir)))
}

// load reads every segment (see the package doc).
func (l *Log) load() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return err
	}
	var firsts []int64
	for _, e := range entries {
		if first, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)
	var dedupFrom int64 // records before this are too old for the window however long the last segment
	if len(firsts) > 0 {
		dedupFrom = firsts[len(firsts)-1] - int64(l.opts.DedupWindow)
	}
	for i, first := range firsts {
		last := i == len(firsts)-1
		if i > 0 {
			prev := l.segs[i-1]
			if prev.count == 0 {
				return fmt.Errorf("%w: %s holds no record but is not the last segment", eventlog.ErrCorrupt, prev.path)
			}
			if want := prev.first + prev.count; first != want {
				return fmt.Errorf("%w: %s follows %s, which ends at record %d", eventlog.ErrCorrupt, segmentName(first), prev.path, want-1)
			}
		}
		s := &segment{first: first, path: filepath.Join(l.dir, segmentName(first))}
		if s.f, err = os.OpenFile(s.path, os.O_RDWR, 0); err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		bad, err := s.scan(func(r record) {
			if r.seq >= dedupFrom {
				l.dedup.add(string(r.id), r.seq)
			}
		})
		if err != nil {
			return err
		}
		if bad != nil && !last {
			return fmt.Errorf("%w: %s at offset %d (record %d): %v", eventlog.ErrCorrupt, s.path, s.size, s.first+s.count, bad)
		}
		if bad != nil {
			if err := l.truncateTail(s, bad); err != nil {
				return err
			}
		}
	}
	if len(l.segs) > 0 {
		s := l.segs[len(l.segs)-1]
		l.head = s.first + s.count - 1
		l.lastTime = s.lastTime
	}
	l.next = l.head + 1
	return nil
}

// truncateTail cuts the last segment at the bad record found at s.size,
// unless an intact record follows it (then it is corruption, not a torn
// write).
func (l *Log) truncateTail(s *segment, bad error) error {
	info, err := s.f.Stat()
	if err != nil {
		return err
	}
	rest := make([]byte, info.Size()-s.size)
	if _, err := s.f.ReadAt(rest, s.size); err != nil {
		return fmt.Errorf("read %s: %w", s.path, err)
	}
	if recordAfter(rest, s.first+s.count-1) {
		return fmt.Errorf("%w: %s at offset %d (record %d): %v, and intact records follow", eventlog.ErrCorrupt, s.path, s.size, s.first+s.count, bad)
	}
	if err := s.f.Truncate(s.size); err != nil {
		return fmt.Errorf("truncate %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.path, err)
	}
	l.recovery = &Recovery{
		Segment:        s.path,
		At:             s.size,
		TruncatedBytes: int64(len(rest)),
		Head:           s.first + s.count - 1,
		Reason:         bad.Error(),
	}
	return nil
}

// createSegment creates the empty segment file starting at first and makes
// its directory entry durable.
func (l *Log) createSegment(first int64) (*segment, error) {
	s := &segment{first: first, path: filepath.Join(l.dir, segmentName(first))}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if err := l.syncDir(); err != nil {
		_ = f.Close()
		_ = os.Remove(s.path)
		return nil, err
	}
	s.f = f
	return s, nil
}

func (l *Log) syncDir() error {
	if err := l.dirf.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	return nil
}

// Recovered reports the torn tail Open truncated, if it found one.
func (l *Log) Recovered() (Recovery, bool) {
	if l.recovery == nil {
		return Recovery{}, false
	}
	return *l.recovery, true
}

// Append implements eventlog.Log. It returns once the entries are fsynced,
// sharing the fsync with every Append waiting at the same time. If ctx ends
// first it returns ctx's error; the entries may be stored anyway.
func (l *Log) Append(ctx context.Context, entries []eventlog.Entry) ([]eventlog.Result, error) {
	if err := eventlog.CheckEntries(entries); err != nil {
		return nil, fmt.Errorf("filelog: append: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("filelog: append: %w", err)
	}
	select {
	case <-l.quit:
		return nil, fmt.Errorf("filelog: append: %w", eventlog.ErrClosed)
	default:
	}
	if len(entries) == 0 {
		return []eventlog.Result{}, nil
	}
	r := newAppendReq(entries)
	select {
	case l.reqs <- r:
	case <-l.quit:
		return nil, fmt.Errorf("filelog: append: %w", eventlog.ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("filelog: append: %w", ctx.Err())
	}
	select {
	case <-r.done:
		return r.results, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("filelog: append: %w", ctx.Err())
	}
}

// Read implements eventlog.Log. It returns fewer than limit records when
// their bodies add up to more than 32 MiB (always at least one).
func (l *Log) Read(ctx context.Context, since int64, limit int) ([]eventlog.Record, error) {
	if err := eventlog.CheckRead(since, limit); err != nil {
		return nil, fmt.Errorf("filelog: read: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("filelog: read: %w", err)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, fmt.Errorf("filelog: read: %w", eventlog.ErrClosed)
	}
	if first := l.first(); since < first-1 {
		return nil, fmt.Errorf("filelog: read: %w", &eventlog.TooOldError{Since: since, First: first})
	}
	var out []eventlog.Record
	budget := maxReadBytes
	// The first segment holding a record after since.
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first+l.segs[i].count > since+1 })
	for from := since + 1; i < len(l.segs) && len(out) < limit && budget > 0 && from <= l.head; i++ {
		s := l.segs[i]
		var err error
		if out, err = s.read(max(from, s.first), limit-len(out), &budget, out); err != nil {
			return nil, fmt.Errorf("filelog: read: %w", err)
		}
		from = s.first + s.count
	}
	return out, nil
}

// first is the oldest sequence number held. The caller holds l.mu.
func (l *Log) first() int64 {
	if len(l.segs) == 0 {
		return l.head + 1
	}
	return l.segs[0].first
}

// Stats implements eventlog.Log. Bytes counts the segment files.
func (l *Log) Stats(ctx context.Context) (eventlog.Stats, error) {
	if err := ctx.Err(); err != nil {
		return eventlog.Stats{}, fmt.Errorf("filelog: stats: %w", err)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return eventlog.Stats{}, fmt.Errorf("filelog: stats: %w", eventlog.ErrClosed)
	}
	st := eventlog.Stats{First: l.first(), Head: l.head}
	for _, s := range l.segs {
		st.Bytes += s.size
	}
	return st, nil
}

// Compact implements eventlog.Log: it deletes the oldest segment files
// whose newest record is older than before, never the segment holding the
// latest record.
func (l *Log) Compact(ctx context.Context, before time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("filelog: compact: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, fmt.Errorf("filelog: compact: %w", eventlog.ErrClosed)
	}
	var removed int64
	for len(l.segs) > 1 {
		s := l.segs[0]
		if s.count == 0 || s.first+s.count > l.head || !time.Unix(0, s.lastTime).Before(before) {
			break
		}
		if err := os.Remove(s.path); err != nil {
			return removed, fmt.Errorf("filelog: compact: %w", err)
		}
		_ = s.f.Close()
		l.segs[0] = nil
		l.segs = l.segs[1:]
		removed += s.count
	}
	if removed > 0 {
		if err := l.syncDir(); err != nil {
			return removed, fmt.Errorf("filelog: compact: %w", err)
		}
	}
	return removed, nil
}

// Close implements eventlog.Log: Appends already taken by the writer finish,
// later calls return eventlog.ErrClosed, and the directory lock is released.
func (l *Log) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.quit)
		l.wg.Wait()
		l.mu.Lock()
		l.closed = true
		for _, s := range l.segs {
			if cerr := s.f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("filelog: close: %w", cerr)
			}
		}
		l.segs = nil
		l.mu.Unlock()
		if cerr := l.dirf.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("filelog: close: %w", cerr)
		}
	})
	return err
}
