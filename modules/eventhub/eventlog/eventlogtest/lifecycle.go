package eventlogtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// testReopen: everything acknowledged survives Close and Open, IDs are
// still deduplicated, and sequence numbers continue.
func testReopen(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	var all []eventlog.Entry
	for i, n := range []int{3, 1, 50} {
		es := entries(fmt.Sprintf("r%d", i), n)
		mustAppend(t, l, int64(len(all))+1, es)
		all = append(all, es...)
	}
	before := readAll(t, l, 0)
	st := mustStats(t, l, 1, int64(len(all)))
	mustClose(t, l)

	l = open(t)
	mustStats(t, l, st.First, st.Head)
	after := readAll(t, l, 0)
	checkRecords(t, after, 1, all)
	for i := range before {
		if !after[i].Time.Equal(before[i].Time) {
			t.Fatalf("record %d: Time %v before the restart, %v after", after[i].Seq, before[i].Time, after[i].Time)
		}
	}
	res, err := l.Append(ctxFor(t), []eventlog.Entry{all[0], entry("new"), all[len(all)-1]})
	if err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
	head := int64(len(all))
	want := []eventlog.Result{{Seq: 1, Duplicate: true}, {Seq: head + 1}, {Seq: head, Duplicate: true}}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Fatalf("Append of old IDs and a new one after reopen: %+v, want %+v", res, want)
	}
	mustClose(t, l)

	l = open(t)
	mustStats(t, l, 1, head+1)
	checkRecords(t, readAll(t, l, 0), 1, append(all, entry("new")))
}

// testCompact: Compact removes only records older than its cut, never the
// latest one; reading what it removed is a TooOldError naming the oldest
// record held, from which reading works; all of it survives a restart.
func testCompact(t *testing.T, b Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	ctx := ctxFor(t)
	t0 := time.Now()
	var old []eventlog.Entry
	for i := range 20 {
		es := entries(fmt.Sprintf("old%d", i), 10)
		for j := range es {
			es[j].Body = []byte(strings.Repeat("o", 100))
		}
		mustAppend(t, l, int64(len(old))+1, es)
		old = append(old, es...)
	}
	if n, err := l.Compact(ctx, t0.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Compact(an hour before the first append): removed %d, %v; want 0, nil", n, err)
	}
	mustStats(t, l, 1, int64(len(old)))

	cut := time.Now()
	for !time.Now().After(cut) {
		// Spin (for a microsecond at most): records appended from now on
		// are not older than cut.
	}
	var recent []eventlog.Entry
	firstRecent := int64(len(old)) + 1
	for i := range 20 {
		es := entries(fmt.Sprintf("new%d", i), 10)
		mustAppend(t, l, firstRecent+int64(len(recent)), es)
		recent = append(recent, es...)
	}
	head := firstRecent + int64(len(recent)) - 1
	for _, r := range readAll(t, l, firstRecent-1) {
		if r.Time.Before(cut) {
			t.Fatalf("record %d appended after %v has Time %v", r.Seq, cut, r.Time)
		}
	}

	n1, err := l.Compact(ctx, cut)
	if err != nil {
		t.Fatalf("Compact(cut between old and new): %v", err)
	}
	st := mustStats(t, l, n1+1, head)
	if st.First > firstRecent {
		t.Fatalf("Compact(cut) removed records up to %d, but records from %d on are newer than the cut", st.First-1, firstRecent)
	}
	checkRecords(t, readAll(t, l, firstRecent-1), firstRecent, recent)

	n2, err := l.Compact(ctx, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("Compact(an hour from now): %v", err)
	}
	if n1+n2 == 0 && !b.CoarseCompaction {
		t.Fatalf("Compact removed nothing of %d records (is the backend set up with small segments?)", head)
	}
	st = mustStats(t, l, n1+n2+1, head)
	if st.First > head {
		t.Fatalf("Compact removed the latest record: First %d, Head %d", st.First, head)
	}
	all := append(old, recent...)
	checkRecords(t, readAll(t, l, st.First-1), st.First, all[st.First-1:])

	checkTooOld := func(l eventlog.Log, first int64) {
		t.Helper()
		for _, since := range []int64{0, first / 2, first - 2} {
			if since < 0 || since >= first-1 {
				continue
			}
			_, err := l.Read(ctx, since, 10)
			var tooOld *eventlog.TooOldError
			if !errors.As(err, &tooOld) || !errors.Is(err, eventlog.ErrTooOld) || tooOld.Since != since || tooOld.First != first {
				t.Fatalf("Read(%d) after compaction to %d: %s; want *TooOldError{Since: %d, First: %d} matching ErrTooOld", since, first, describe(err), since, first)
			}
		}
		recs, err := l.Read(ctx, first-1, 1)
		if err != nil || len(recs) != 1 || recs[0].Seq != first {
			t.Fatalf("Read(First-1 = %d, 1): %d records, %s; want record %d", first-1, len(recs), describe(err), first)
		}
	}
	checkTooOld(l, st.First)

	// Appending goes on; compaction survives a restart.
	more := entries("after-compact", 3)
	mustAppend(t, l, head+1, more)
	mustClose(t, l)
	l = open(t)
	mustStats(t, l, st.First, head+3)
	checkTooOld(l, st.First)
	checkRecords(t, readAll(t, l, head), head+1, more)
}

// testInvalid: out-of-bounds arguments are ErrInvalid and change nothing.
func testInvalid(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	ctx := ctxFor(t)
	mustAppend(t, l, 1, entries("ok", 2))
	for _, c := range []struct {
		name string
		es   []eventlog.Entry
	}{
		{"empty id", []eventlog.Entry{entry("fine"), {ID: ""}}},
		{"long id", []eventlog.Entry{{ID: strings.Repeat("x", eventlog.MaxIDLen+1)}}},
		{"big body", []eventlog.Entry{entry("fine"), {ID: "big", Body: make([]byte, eventlog.MaxBodyLen+1)}}},
		{"big batch", entries("many", eventlog.MaxBatch+1)},
	} {
		if res, err := l.Append(ctx, c.es); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("Append with %s: %v, %s; want ErrInvalid", c.name, res, describe(err))
		}
	}
	for _, c := range []struct {
		since int64
		limit int
	}{{0, 0}, {0, -1}, {0, eventlog.MaxReadLimit + 1}, {-1, 10}} {
		if recs, err := l.Read(ctx, c.since, c.limit); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("Read(%d, %d): %d records, %s; want ErrInvalid", c.since, c.limit, len(recs), describe(err))
		}
	}
	// An empty batch is either refused or a no-op.
	if res, err := l.Append(ctx, nil); err != nil && !errors.Is(err, eventlog.ErrInvalid) || err == nil && len(res) != 0 {
		t.Errorf("Append(nil): %v, %s; want no results, or ErrInvalid", res, describe(err))
	}
	mustStats(t, l, 1, 2)
	checkRecords(t, readAll(t, l, 0), 1, entries("ok", 2))
}

// testContextDone: every method returns the context's error when it has
// ended, and the log works on afterwards.
func testContextDone(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	mustAppend(t, l, 1, entries("a", 1))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		if _, err := l.Append(c.ctx, entries("never", 1)); !errors.Is(err, c.want) {
			t.Errorf("Append: %s, want %v", describe(err), c.want)
		}
		if _, err := l.Read(c.ctx, 0, 10); !errors.Is(err, c.want) {
			t.Errorf("Read: %s, want %v", describe(err), c.want)
		}
		if _, err := l.Stats(c.ctx); !errors.Is(err, c.want) {
			t.Errorf("Stats: %s, want %v", describe(err), c.want)
		}
		if _, err := l.Compact(c.ctx, time.Now()); !errors.Is(err, c.want) {
			t.Errorf("Compact: %s, want %v", describe(err), c.want)
		}
	}
	// A cancelled Append acknowledged nothing but may have stored its entry:
	// retrying with the same ID is safe either way.
	res, err := l.Append(ctxFor(t), []eventlog.Entry{entry("never-0"), entry("b")})
	if err != nil {
		t.Fatalf("Append after cancelled calls: %v", err)
	}
	st := mustStats(t, l, 1, res[1].Seq)
	if st.Head > 3 || res[1].Duplicate {
		t.Fatalf("Append after cancelled calls: %+v, Head %d", res, st.Head)
	}
	recs := readAll(t, l, 0)
	checkRecords(t, recs[len(recs)-1:], st.Head, []eventlog.Entry{entry("b")})
}

// testClosed: after Close every method returns ErrClosed and Close is
// idempotent.
func testClosed(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	mustAppend(t, l, 1, entries("a", 1))
	mustClose(t, l)
	ctx := ctxFor(t)
	if _, err := l.Append(ctx, entries("b", 1)); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Append after Close: %s, want ErrClosed", describe(err))
	}
	if _, err := l.Read(ctx, 0, 10); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Read after Close: %s, want ErrClosed", describe(err))
	}
	if _, err := l.Stats(ctx); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Stats after Close: %s, want ErrClosed", describe(err))
	}
	if _, err := l.Compact(ctx, time.Now()); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Compact after Close: %s, want ErrClosed", describe(err))
	}
}

// testCloseDuringAppends: Close while callers keep appending ends each of
// them with ErrClosed (none hangs), and everything acknowledged before is
// there after a restart.
func testCloseDuringAppends(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	const callers = 8
	l := open(t)
	ctx := ctxFor(t)
	var (
		mu    sync.Mutex
		acked = map[int64]string{}
		count atomic.Int64
		wg    sync.WaitGroup
	)
	finalErrs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("c%d-%d", c, i)
				res, err := l.Append(ctx, []eventlog.Entry{entry(id)})
				if err != nil {
					finalErrs <- err
					return
				}
				mu.Lock()
				acked[res[0].Seq] = id
				mu.Unlock()
				count.Add(1)
			}
		})
	}
	deadline := time.Now().Add(waitTimeout)
	for count.Load() < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d appends acknowledged after %v", count.Load(), waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close during appends: %v", err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("appenders still blocked %v after Close", waitTimeout)
	}
	close(finalErrs)
	for err := range finalErrs {
		if !errors.Is(err, eventlog.ErrClosed) {
			t.Errorf("an appender ended with %s, want ErrClosed", describe(err))
		}
	}
	l = open(t)
	recs := readAll(t, l, 0)
	byseq := map[int64]string{}
	for i, r := range recs {
		if r.Seq != int64(i)+1 {
			t.Fatalf("after restart: record %d at position %d: not gap-free", r.Seq, i)
		}
		byseq[r.Seq] = r.ID
	}
	for seq, id := range acked {
		if byseq[seq] != id {
			t.Fatalf("acknowledged record %d (%s) is %q after restart", seq, id, byseq[seq])
		}
	}
}

// testTime: records carry the time they were appended, in UTC, never
// going back, across a restart too.
func testTime(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	const skew = 5 * time.Second // the storage's clock may be another machine's
	l := open(t)
	t0 := time.Now()
	n := int64(0)
	for i := range 5 {
		es := entries(fmt.Sprintf("t%d", i), i+1)
		mustAppend(t, l, n+1, es)
		n += int64(len(es))
	}
	mustClose(t, l)
	l = open(t)
	mustAppend(t, l, n+1, entries("after-restart", 2))
	t1 := time.Now()
	var prev time.Time
	for _, r := range readAll(t, l, 0) {
		if r.Time.IsZero() || r.Time.Location() != time.UTC {
			t.Fatalf("record %d: Time %v, want a UTC time", r.Seq, r.Time)
		}
		if r.Time.Before(t0.Add(-skew)) || r.Time.After(t1.Add(skew)) {
			t.Fatalf("record %d: Time %v, appended between %v and %v", r.Seq, r.Time, t0, t1)
		}
		if r.Time.Before(prev) {
			t.Fatalf("record %d: Time %v before the previous record's %v", r.Seq, r.Time, prev)
		}
		prev = r.Time
	}
}
