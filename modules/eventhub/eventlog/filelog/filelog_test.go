package filelog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/eventlogtest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	for _, segBytes := range []int64{4 << 10, DefaultSegmentBytes} {
		t.Run(fmt.Sprintf("SegmentBytes=%d", segBytes), func(t *testing.T) {
			if segBytes == DefaultSegmentBytes && testing.Short() {
				t.Skip("-short: small segments only")
			}
			eventlogtest.Run(t, eventlogtest.Backend{
				New: func(t *testing.T) func(t *testing.T) eventlog.Log {
					dir := t.TempDir()
					return func(t *testing.T) eventlog.Log {
						return mustOpen(t, dir, Options{SegmentBytes: segBytes})
					}
				},
				CoarseCompaction: segBytes == DefaultSegmentBytes,
			})
		})
	}
}

// mustOpen opens a log closed at the test's end.
func mustOpen(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// appendN appends n entries with IDs prefix-i and bodies of size bytes,
// one Append per entry, and returns them.
func appendN(t *testing.T, l *Log, prefix string, n, size int) []eventlog.Entry {
	t.Helper()
	var es []eventlog.Entry
	for i := range n {
		e := eventlog.Entry{ID: fmt.Sprintf("%s-%d", prefix, i), Body: make([]byte, size)}
		for j := range e.Body {
			e.Body[j] = byte(i + j)
		}
		if _, err := l.Append(ctxFor(t), []eventlog.Entry{e}); err != nil {
			t.Fatalf("Append %s: %v", e.ID, err)
		}
		es = append(es, e)
	}
	return es
}

// segmentFiles lists the segment file names in dir.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestSegmentsNamedByFirstSeq(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 1000})
	// Records of 25+5+200 = 230 bytes: four fit in 1000 bytes.
	appendN(t, l, "seg", 10, 200)
	want := []string{"00000000000000000001.seg", "00000000000000000005.seg", "00000000000000000009.seg"}
	if got := segmentFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("segment files %v, want %v", got, want)
	}
	// A record larger than SegmentBytes gets a segment of its own.
	big := eventlog.Entry{ID: "big", Body: make([]byte, 5000)}
	if _, err := l.Append(ctxFor(t), []eventlog.Entry{big}); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "after", 1, 10)
	want = append(want, "00000000000000000011.seg", "00000000000000000012.seg")
	if got := segmentFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("segment files %v, want %v", got, want)
	}
}

// TestReadEverySince reads from every position of segments holding more
// than one index interval, so every index entry and the scan between them
// is used.
func TestReadEverySince(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 64 << 10})
	const n = 1100 // records of 25+6+20 bytes: ~1280 per segment, several index entries each
	es := make([]eventlog.Entry, n)
	for i := range es {
		es[i] = eventlog.Entry{ID: fmt.Sprintf("e-%04d", i), Body: []byte(fmt.Sprintf("body of record %04d", i+1))}
	}
	for i := 0; i < n; i += 100 {
		if _, err := l.Append(ctxFor(t), es[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	for pass := range 2 {
		for since := int64(0); since < n; since++ {
			limit := 1 + int(since%5)
			recs, err := l.Read(ctxFor(t), since, limit)
			if err != nil {
				t.Fatalf("Read(%d, %d): %v", since, limit, err)
			}
			if want := min(limit, n-int(since)); len(recs) != want {
				t.Fatalf("Read(%d, %d): %d records, want %d", since, limit, len(recs), want)
			}
			for i, r := range recs {
				e := es[since+int64(i)]
				if r.Seq != since+int64(i)+1 || r.ID != e.ID || string(r.Body) != string(e.Body) {
					t.Fatalf("Read(%d, %d)[%d]: seq %d id %s, want seq %d id %s", since, limit, i, r.Seq, r.ID, since+int64(i)+1, e.ID)
				}
			}
		}
		if pass == 0 { // again with the indexes Open rebuilds
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, Options{SegmentBytes: 64 << 10})
		}
	}
}

func TestReadCapsBytes(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	body := make([]byte, eventlog.MaxBodyLen)
	for i := range 40 {
		if _, err := l.Append(ctxFor(t), []eventlog.Entry{{ID: fmt.Sprint(i), Body: body}}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := l.Read(ctxFor(t), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != maxReadBytes/eventlog.MaxBodyLen {
		t.Fatalf("Read of 40 1-MiB records: %d records, want %d (32 MiB)", len(recs), maxReadBytes/eventlog.MaxBodyLen)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	if l2, err := Open(dir, Options{}); !errors.Is(err, eventlog.ErrLocked) {
		if l2 != nil {
			_ = l2.Close()
		}
		t.Fatalf("second Open of %s: %v, want ErrLocked", dir, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, dir, Options{}) // released by Close
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{SegmentBytes: -1}, {DedupWindow: -1}} {
		if l, err := Open(t.TempDir(), o); !errors.Is(err, eventlog.ErrInvalid) {
			if l != nil {
				_ = l.Close()
			}
			t.Errorf("Open with %+v: %v, want ErrInvalid", o, err)
		}
	}
	// A directory that cannot be made is a plain error.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Open(filepath.Join(file, "log"), Options{}); err == nil {
		_ = l.Close()
		t.Error("Open under a regular file succeeded")
	}
	// The directory is created, with its parents.
	dir := filepath.Join(t.TempDir(), "a", "b")
	mustOpen(t, dir, Options{})
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

// TestDedupWindow: an ID is remembered for DedupWindow records, also across
// a restart, then stored again.
func TestDedupWindow(t *testing.T) {
	dir := t.TempDir()
	opts := Options{DedupWindow: 10, SegmentBytes: 200}
	l := mustOpen(t, dir, opts)
	appendN(t, l, "w", 20, 10) // seqs 1..20; the window holds 11..20
	for pass := range 2 {
		res, err := l.Append(ctxFor(t), []eventlog.Entry{{ID: "w-10"}, {ID: "w-19"}})
		if err != nil {
			t.Fatal(err)
		}
		if want := []eventlog.Result{{Seq: 11, Duplicate: true}, {Seq: 20, Duplicate: true}}; !slices.Equal(res, want) {
			t.Fatalf("pass %d: Append of IDs inside the window: %+v, want %+v", pass, res, want)
		}
		if pass == 0 {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, opts)
		}
	}
	res, err := l.Append(ctxFor(t), []eventlog.Entry{{ID: "w-9"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []eventlog.Result{{Seq: 21}}; !slices.Equal(res, want) {
		t.Fatalf("Append of an ID older than the window: %+v, want %+v", res, want)
	}
}

// TestCompactKeepsActiveSegment: even when every record is old, the segment
// holding the latest record stays.
func TestCompactKeepsActiveSegment(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 1000})
	appendN(t, l, "c", 10, 200) // segments 1, 5, 9
	n, err := l.Compact(ctxFor(t), time.Now().Add(time.Hour))
	if err != nil || n != 8 {
		t.Fatalf("Compact: %d, %v; want 8 removed", n, err)
	}
	if got, want := segmentFiles(t, dir), []string{"00000000000000000009.seg"}; !slices.Equal(got, want) {
		t.Fatalf("segment files %v, want %v", got, want)
	}
	if n, err := l.Compact(ctxFor(t), time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("second Compact: %d, %v; want 0", n, err)
	}
	st, err := l.Stats(ctxFor(t))
	if err != nil || st.First != 9 || st.Head != 10 || st.Bytes != 2*228 { // records of 25+3+200 bytes
		t.Fatalf("Stats after Compact: %+v, %v; want First 9, Head 10, Bytes 456", st, err)
	}
}

// TestWriteFailure: after a failed write the log refuses appends until it
// is reopened; what was acknowledged before is intact and sequence numbers
// continue.
func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	es := appendN(t, l, "before", 5, 10)
	// Swap the active segment's file for a read-only one: the next write fails.
	l.mu.Lock()
	s := l.segs[len(l.segs)-1]
	ro, err := os.Open(s.path)
	if err != nil {
		l.mu.Unlock()
		t.Fatal(err)
	}
	rw := s.f
	s.f = ro
	l.mu.Unlock()
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := l.Append(ctxFor(t), []eventlog.Entry{{ID: fmt.Sprint("fails-", i)}}); err == nil {
			t.Fatalf("Append #%d after a failed write succeeded", i+1)
		} else if !strings.Contains(err.Error(), "reopen") {
			t.Fatalf("Append #%d after a failed write: %v, want it to say to reopen", i+1, err)
		}
	}
	// Reads still work.
	if recs, err := l.Read(ctxFor(t), 0, 10); err != nil || len(recs) != 5 {
		t.Fatalf("Read after a failed write: %d records, %v", len(recs), err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	checkPrefix(t, l, es, 5)
}

// TestConcurrentReadCompact: appenders, tailing readers and a compactor at
// once (for -race): readers see every record they are given in order with
// its body, and a reader overtaken by compaction gets a TooOldError it can
// resume from.
func TestConcurrentReadCompact(t *testing.T) {
	const appenders, perAppender, readers = 4, 300, 2
	l := mustOpen(t, t.TempDir(), Options{SegmentBytes: 2 << 10})
	ctx := ctxFor(t)
	body := func(id string) []byte { return []byte(strings.Repeat(id, 3)) }
	var (
		wg       sync.WaitGroup
		appended atomic.Int64
		errs     = make(chan error, appenders+readers+1)
	)
	for a := range appenders {
		wg.Go(func() {
			for i := range perAppender {
				id := fmt.Sprintf("a%d-%d", a, i)
				if _, err := l.Append(ctx, []eventlog.Entry{{ID: id, Body: body(id)}}); err != nil {
					errs <- err
					return
				}
			}
			appended.Add(perAppender)
		})
	}
	stop := make(chan struct{})
	var tooOld atomic.Int64
	for range readers {
		wg.Go(func() {
			for since := int64(0); since < appenders*perAppender; {
				recs, err := l.Read(ctx, since, 50)
				var old *eventlog.TooOldError
				if errors.As(err, &old) {
					tooOld.Add(1)
					since = old.First - 1
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for _, r := range recs {
					if r.Seq != since+1 || string(r.Body) != string(body(r.ID)) {
						errs <- fmt.Errorf("reader after %d got record %d %s with body %q", since, r.Seq, r.ID, r.Body)
						return
					}
					since = r.Seq
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := l.Compact(ctx, time.Now()); err != nil {
				errs <- err
				return
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for appended.Load() < appenders*perAppender && len(errs) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err := l.Stats(ctx)
	if err != nil || st.Head != appenders*perAppender || st.First <= 1 {
		t.Fatalf("Stats: %+v, %v; want Head %d and compacted", st, err, appenders*perAppender)
	}
	t.Logf("readers resumed after compaction %d times; First %d", tooOld.Load(), st.First)
}
