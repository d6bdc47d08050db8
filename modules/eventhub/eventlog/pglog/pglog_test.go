package pglog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/internal/pgtest"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open opens a Log on dsn, closed when t ends.
func open(t testing.TB, dsn string, opts Options) *Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// sqlDB opens a plain connection pool on dsn, closed when t ends.
func sqlDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func entry(id string, body string) eventlog.Entry {
	return eventlog.Entry{ID: id, Body: []byte(body)}
}

func appendOK(t *testing.T, l *Log, entries ...eventlog.Entry) []eventlog.Result {
	t.Helper()
	res, err := l.Append(ctxT(t), entries)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(res) != len(entries) {
		t.Fatalf("Append: %d results for %d entries", len(res), len(entries))
	}
	return res
}

// readAll reads every record after since, checking that sequences are
// consecutive and times non-decreasing.
func readAll(t *testing.T, l *Log, since int64) []eventlog.Record {
	t.Helper()
	var all []eventlog.Record
	for {
		recs, err := l.Read(ctxT(t), since, eventlog.MaxReadLimit)
		if err != nil {
			t.Fatalf("Read(%d): %v", since, err)
		}
		if len(recs) == 0 {
			return all
		}
		for _, r := range recs {
			if r.Seq != since+1 {
				t.Fatalf("Read: seq %d after %d: a hole", r.Seq, since)
			}
			if n := len(all); n > 0 && r.Time.Before(all[n-1].Time) {
				t.Fatalf("Read: seq %d at %v, before seq %d at %v", r.Seq, r.Time, all[n-1].Seq, all[n-1].Time)
			}
			since = r.Seq
			all = append(all, r)
		}
	}
}

func stats(t *testing.T, l *Log) eventlog.Stats {
	t.Helper()
	s, err := l.Stats(ctxT(t))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// holder holds the "head" row lock of a table from its own transaction,
// so the writers of every Log on that table block in their transaction.
type holder struct {
	t   *testing.T
	db  *sql.DB
	tx  *sql.Tx
	pid int
}

func holdHead(t *testing.T, dsn, table string) *holder {
	t.Helper()
	db := sqlDB(t, dsn)
	ctx := ctxT(t)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{t: t, db: db, tx: tx}
	if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&h.pid); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT v FROM "+table+"_meta WHERE k = 'head' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.tx.Rollback() })
	return h
}

// waitBlocked waits until n sessions wait for the holder's lock.
func (h *holder) waitBlocked(n int) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("%d sessions blocked on the head lock", n), func() bool {
		var got int
		err := h.db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", h.pid).Scan(&got)
		if err != nil {
			h.t.Fatal(err)
		}
		return got == n
	})
}

func (h *holder) release() {
	h.t.Helper()
	if err := h.tx.Rollback(); err != nil {
		h.t.Fatal(err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"table", Options{Table: "_events_2"}, true},
		{"longest table", Options{Table: strings.Repeat("a", MaxTableLen)}, true},
		{"table too long", Options{Table: strings.Repeat("a", MaxTableLen+1)}, false},
		{"upper case", Options{Table: "Events"}, false},
		{"leading digit", Options{Table: "1events"}, false},
		{"qualified", Options{Table: "public.events"}, false},
		{"injection", Options{Table: `x"; DROP TABLE y; --`}, false},
		{"negative conns", Options{MaxConns: -1}, false},
		{"negative timeout", Options{WriteTimeout: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, eventlog.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if !tt.ok {
				if _, err := Open(context.Background(), "postgres://127.0.0.1:1/x", tt.opts); !errors.Is(err, eventlog.ErrInvalid) {
					t.Fatalf("Open = %v, want ErrInvalid", err)
				}
			}
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5", Options{})
	if err == nil || !strings.Contains(err.Error(), "pglog: open") {
		t.Fatalf("Open = %v, want a pglog: open error", err)
	}
}

func TestOpenConcurrentlyAndReopen(t *testing.T) {
	dsn := pgtest.Schema(t)
	const n = 6
	logs := make([]*Log, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { logs[i], errs[i] = Open(ctxT(t), dsn, Options{}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer logs[i].Close()
	}
	appendOK(t, logs[0], entry("a", "1"), entry("b", "2"))
	if got := readAll(t, logs[n-1], 0); len(got) != 2 || got[1].ID != "b" || string(got[1].Body) != "2" {
		t.Fatalf("another Log reads %+v", got)
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}

	l := open(t, dsn, Options{})
	if s := stats(t, l); s.First != 1 || s.Head != 2 || s.Bytes <= 0 {
		t.Fatalf("Stats after reopen = %+v, want First 1 Head 2 and some bytes", s)
	}
	if res := appendOK(t, l, entry("c", ""), entry("a", "again")); res[0] != (eventlog.Result{Seq: 3}) || res[1] != (eventlog.Result{Seq: 1, Duplicate: true}) {
		t.Fatalf("Append after reopen = %+v", res)
	}
	got := readAll(t, l, 0)
	if len(got) != 3 || got[2].ID != "c" || got[2].Body == nil || len(got[2].Body) != 0 {
		t.Fatalf("Read = %+v, want 3 records, the last with an empty body", got)
	}
}

func TestUnexpectedTable(t *testing.T) {
	dsn := pgtest.Schema(t)
	db := sqlDB(t, dsn)
	if _, err := db.Exec("CREATE TABLE zeroci_events (seq int PRIMARY KEY, id text, time timestamptz, body bytea)"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctxT(t), dsn, Options{})
	if err == nil || !strings.Contains(err.Error(), "unexpected shape") {
		t.Fatalf("Open on a foreign table = %v, want an unexpected shape error", err)
	}
	if _, err := db.Exec("CREATE TABLE other_meta (k text PRIMARY KEY, v bigint NOT NULL, t timestamptz)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO other_meta VALUES ('head', 5, NULL), ('first', 9, NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctxT(t), dsn, Options{Table: "other"}); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Fatalf("Open with first > head+1 = %v, want ErrCorrupt", err)
	}
}

func TestTablesAreIndependent(t *testing.T) {
	dsn := pgtest.Schema(t)
	a := open(t, dsn, Options{Table: "a"})
	b := open(t, dsn, Options{Table: "b"})
	appendOK(t, a, entry("x", "a"))
	if res := appendOK(t, b, entry("x", "b")); res[0] != (eventlog.Result{Seq: 1}) {
		t.Fatalf("the same id in another table = %+v, want new seq 1", res[0])
	}
	if got := readAll(t, b, 0); len(got) != 1 || string(got[0].Body) != "b" {
		t.Fatalf("table b holds %+v", got)
	}
}

func TestDuplicates(t *testing.T) {
	l := open(t, pgtest.Schema(t), Options{})
	res := appendOK(t, l, entry("a", "1"), entry("b", "2"), entry("a", "3"))
	want := []eventlog.Result{{Seq: 1}, {Seq: 2}, {Seq: 1, Duplicate: true}}
	for i := range want {
		if res[i] != want[i] {
			t.Fatalf("results = %+v, want %+v", res, want)
		}
	}
	res = appendOK(t, l, entry("b", "x"), entry("c", "4"))
	if res[0] != (eventlog.Result{Seq: 2, Duplicate: true}) || res[1] != (eventlog.Result{Seq: 3}) {
		t.Fatalf("results = %+v", res)
	}
	got := readAll(t, l, 0)
	if len(got) != 3 || string(got[0].Body) != "1" || string(got[1].Body) != "2" {
		t.Fatalf("stored %+v: a duplicate replaced a body", got)
	}
}

func TestIDsAnyBytes(t *testing.T) {
	l := open(t, pgtest.Schema(t), Options{})
	ids := []string{"nul\x00byte", "\xff\xfe invalid utf-8", "ünïcödé", `quote" and \ backslash`, "{a,b}", strings.Repeat("z", eventlog.MaxIDLen)}
	var in []eventlog.Entry
	for _, id := range ids {
		in = append(in, entry(id, id))
	}
	appendOK(t, l, in...)
	res := appendOK(t, l, in...)
	for i, r := range res {
		if !r.Duplicate || r.Seq != int64(i+1) {
			t.Fatalf("re-append of %q = %+v, want duplicate of %d", ids[i], r, i+1)
		}
	}
	got := readAll(t, l, 0)
	for i, r := range got {
		if r.ID != ids[i] || string(r.Body) != ids[i] {
			t.Fatalf("record %d = %q/%q, want %q", i, r.ID, r.Body, ids[i])
		}
	}
}

func TestBadInput(t *testing.T) {
	l := open(t, pgtest.Schema(t), Options{})
	ctx := ctxT(t)
	bad := [][]eventlog.Entry{
		{entry("", "x")},
		{entry(strings.Repeat("i", eventlog.MaxIDLen+1), "x")},
		{entry("ok", "x"), {ID: "big", Body: make([]byte, eventlog.MaxBodyLen+1)}},
		make([]eventlog.Entry, eventlog.MaxBatch+1),
	}
	for i, entries := range bad {
		if _, err := l.Append(ctx, entries); !errors.Is(err, eventlog.ErrInvalid) {
			t.Fatalf("bad append %d = %v, want ErrInvalid", i, err)
		}
	}
	for _, args := range [][2]int64{{-1, 10}, {0, 0}, {0, eventlog.MaxReadLimit + 1}} {
		if _, err := l.Read(ctx, args[0], int(args[1])); !errors.Is(err, eventlog.ErrInvalid) {
			t.Fatalf("Read(%d, %d) = %v, want ErrInvalid", args[0], args[1], err)
		}
	}
	if res, err := l.Append(ctx, nil); err != nil || len(res) != 0 {
		t.Fatalf("empty Append = %v, %v", res, err)
	}
	if recs, err := l.Read(ctx, 0, 10); err != nil || recs == nil || len(recs) != 0 {
		t.Fatalf("Read of an empty log = %#v, %v; want an empty slice", recs, err)
	}
	if recs, err := l.Read(ctx, 1000, 10); err != nil || len(recs) != 0 {
		t.Fatalf("Read past the head = %v, %v", recs, err)
	}
	if s := stats(t, l); s.First != 1 || s.Head != 0 {
		t.Fatalf("Stats = %+v: bad input stored something", s)
	}
}

// TestTwoLogsConcurrently is the fail-over case: two hub processes append
// to one table at once. Sequences stay gap-free and unique, every ack is
// stored, and a reader polling meanwhile never sees a hole fill later.
func TestTwoLogsConcurrently(t *testing.T) {
	dsn := pgtest.Schema(t)
	logs := []*Log{open(t, dsn, Options{}), open(t, dsn, Options{})}
	const writers, appends, batch = 8, 25, 3

	var (
		mu   sync.Mutex
		acks = map[string]int64{}
	)
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() { readerErr <- pollReader(logs[1], stop) }()

	var wg sync.WaitGroup
	for w := range writers {
		l := logs[w%2]
		wg.Go(func() {
			for a := range appends {
				var in []eventlog.Entry
				for b := range batch {
					in = append(in, entry(fmt.Sprintf("w%d-a%d-b%d", w, a, b), "body"))
				}
				res, err := l.Append(context.Background(), in)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				for i, r := range res {
					if r.Duplicate {
						t.Errorf("%s answered duplicate", in[i].ID)
					}
					if i > 0 && r.Seq != res[i-1].Seq+1 {
						t.Errorf("one Append's seqs %d, %d are not consecutive", res[i-1].Seq, r.Seq)
					}
					acks[in[i].ID] = r.Seq
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}

	got := readAll(t, logs[0], 0)
	if len(got) != writers*appends*batch || len(acks) != len(got) {
		t.Fatalf("%d records, %d acks, want %d", len(got), len(acks), writers*appends*batch)
	}
	for _, r := range got {
		if acks[r.ID] != r.Seq {
			t.Fatalf("%s stored at %d, acked at %d", r.ID, r.Seq, acks[r.ID])
		}
	}
	if logs[0].commits.Load()+logs[1].commits.Load() > writers*appends {
		t.Fatalf("more commits than appends")
	}
}

// pollReader follows the log until stop, failing when a read skips a seq.
func pollReader(l *Log, stop <-chan struct{}) error {
	var since int64
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		recs, err := l.Read(context.Background(), since, 100)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Seq != since+1 {
				return fmt.Errorf("reader saw seq %d after %d: a hole that fills later", r.Seq, since)
			}
			since = r.Seq
		}
	}
}

func TestDuplicatesAcrossLogs(t *testing.T) {
	dsn := pgtest.Schema(t)
	logs := []*Log{open(t, dsn, Options{}), open(t, dsn, Options{})}
	const n = 200
	results := make([][]eventlog.Result, 2)
	var wg sync.WaitGroup
	for i, l := range logs {
		wg.Go(func() {
			for k := range n {
				// Each Log appends the same IDs, in its own order.
				id := k
				if i == 1 {
					id = n - 1 - k
				}
				res, err := l.Append(context.Background(), []eventlog.Entry{entry(fmt.Sprint(id), fmt.Sprint(i))})
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				results[i] = append(results[i], res[0])
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := readAll(t, logs[0], 0)
	if len(got) != n {
		t.Fatalf("%d records stored, want %d", len(got), n)
	}
	seqOf := map[string]int64{}
	for _, r := range got {
		seqOf[r.ID] = r.Seq
	}
	for k := range n {
		a, b := results[0][k], results[1][n-1-k]
		if a.Seq != seqOf[fmt.Sprint(k)] || b.Seq != a.Seq || a.Duplicate == b.Duplicate {
			t.Fatalf("id %d: results %+v and %+v, stored at %d; want one new and one duplicate of it", k, a, b, seqOf[fmt.Sprint(k)])
		}
	}
}

// TestGroupCommit blocks the writer inside a transaction, queues many
// Appends behind it, and checks they all commit in one more transaction.
func TestGroupCommit(t *testing.T) {
	dsn := pgtest.Schema(t)
	l := open(t, dsn, Options{})
	h := holdHead(t, dsn, DefaultTable)
	const k = 50
	type out struct {
		i   int
		res []eventlog.Result
		err error
	}
	outs := make(chan out, k)
	appendAsync := func(i int) {
		go func() {
			// Appends 1.. share ID "shared": one stores it, the others
			// (in the same transaction) get its seq as duplicate.
			in := []eventlog.Entry{entry(fmt.Sprintf("e%d", i), "b"), entry(fmt.Sprintf("f%d", i), "b")}
			if i > 0 {
				in = append(in, entry("shared", "s"))
			}
			res, err := l.Append(context.Background(), in)
			outs <- out{i, res, err}
		}()
	}
	appendAsync(0)
	h.waitBlocked(1)
	for i := 1; i < k; i++ {
		appendAsync(i)
	}
	eventually(t, "appends queued", func() bool { return len(l.reqs) == k-1 })
	h.release()

	var shared int64
	seen := map[int64]bool{}
	for range k {
		o := <-outs
		if o.err != nil {
			t.Fatalf("Append %d: %v", o.i, o.err)
		}
		if o.res[1].Seq != o.res[0].Seq+1 {
			t.Fatalf("Append %d: seqs %+v are not consecutive", o.i, o.res)
		}
		for _, r := range o.res[:2] {
			if seen[r.Seq] {
				t.Fatalf("seq %d given twice", r.Seq)
			}
			seen[r.Seq] = true
		}
		if o.i > 0 {
			if shared == 0 {
				shared = o.res[2].Seq
			}
			if o.res[2].Seq != shared {
				t.Fatalf("Append %d: shared id at %d, others at %d", o.i, o.res[2].Seq, shared)
			}
		}
	}
	if got := l.commits.Load(); got != 2 {
		t.Fatalf("%d commits for %d appends queued together, want 2", got, k)
	}
	if got := readAll(t, l, 0); len(got) != 2*k+1 {
		t.Fatalf("%d records, want %d", len(got), 2*k+1)
	}
}

func TestAppendCancelled(t *testing.T) {
	dsn := pgtest.Schema(t)
	l := open(t, dsn, Options{})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, []eventlog.Entry{entry("never", "x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled ctx = %v, want context.Canceled", err)
	}

	h := holdHead(t, dsn, DefaultTable)
	cancelAsync := func(id string) (cancel func(), errc chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		errc = make(chan error, 1)
		go func() {
			_, err := l.Append(ctx, []eventlog.Entry{entry(id, "x")})
			errc <- err
		}()
		return cancel, errc
	}
	cancelLate, errLate := cancelAsync("late")
	h.waitBlocked(1) // "late" is in the writer's transaction
	cancelQueued, errQueued := cancelAsync("queued")
	eventually(t, "queued to be queued", func() bool { return len(l.reqs) == 1 })
	cancelLate()
	cancelQueued()
	for _, errc := range []chan error{errLate, errQueued} {
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Append = %v, want context.Canceled", err)
		}
	}
	h.release()

	// The transaction went on, and a retry finds "late" stored; the
	// writer dropped "queued", whose caller had gone before it began.
	res := appendOK(t, l, entry("late", "x"), entry("next", "y"))
	if res[0] != (eventlog.Result{Seq: 1, Duplicate: true}) || res[1] != (eventlog.Result{Seq: 2}) {
		t.Fatalf("retry = %+v, want late as duplicate 1, next as 2 (never and queued stored nothing)", res)
	}
}

func TestAppendDoesNotRetainBodies(t *testing.T) {
	dsn := pgtest.Schema(t)
	l := open(t, dsn, Options{})
	h := holdHead(t, dsn, DefaultTable)
	body := []byte("original")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, []eventlog.Entry{{ID: "a", Body: body}})
		errc <- err
	}()
	h.waitBlocked(1)
	cancel()
	<-errc
	copy(body, "CHANGED!") // the caller reuses its buffer once Append returned
	h.release()
	appendOK(t, l, entry("b", "")) // waits for the writer's first transaction
	if got := readAll(t, l, 0); len(got) != 2 || string(got[0].Body) != "original" {
		t.Fatalf("stored %+v, want the body as it was at Append", got)
	}
}

func TestClose(t *testing.T) {
	dsn := pgtest.Schema(t)
	l, err := Open(ctxT(t), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := holdHead(t, dsn, DefaultTable)
	const k = 5
	errs := make(chan error, k)
	appendAsync := func(i int) {
		go func() {
			_, err := l.Append(context.Background(), []eventlog.Entry{entry(fmt.Sprint(i), "x")})
			errs <- err
		}()
	}
	appendAsync(0)
	h.waitBlocked(1)
	for i := 1; i < k; i++ {
		appendAsync(i)
	}
	eventually(t, "appends queued", func() bool { return len(l.reqs) == k-1 })
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	eventually(t, "Close to begin", l.isClosed)
	if _, err := l.Append(context.Background(), []eventlog.Entry{entry("after", "x")}); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Append during Close = %v, want ErrClosed", err)
	}
	h.release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range k {
		if err := <-errs; err != nil {
			t.Fatalf("an Append queued before Close: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := ctxT(t)
	if _, err := l.Append(ctx, []eventlog.Entry{entry("x", "")}); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if _, err := l.Read(ctx, 0, 1); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Read after Close = %v", err)
	}
	if _, err := l.Stats(ctx); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Stats after Close = %v", err)
	}
	if _, err := l.Compact(ctx, time.Now()); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Compact after Close = %v", err)
	}

	l2 := open(t, dsn, Options{})
	if s := stats(t, l2); s.Head != k {
		t.Fatalf("Head = %d after Close drained %d appends", s.Head, k)
	}
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func TestTime(t *testing.T) {
	dsn := pgtest.Schema(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	ca, cb := &clock{t: t0}, &clock{t: t0}
	a := open(t, dsn, Options{Now: ca.Now})
	b := open(t, dsn, Options{Now: cb.Now, Table: DefaultTable})

	appendOK(t, a, entry("1", ""))
	ca.Set(t0.Add(-time.Hour)) // a's clock goes back
	appendOK(t, a, entry("2", ""))
	ca.Set(t0.Add(time.Hour))
	appendOK(t, a, entry("3", ""))
	appendOK(t, b, entry("4", "")) // b's clock is behind a's
	cb.Set(t0.Add(2 * time.Hour))
	appendOK(t, b, entry("5", ""))

	want := []time.Time{t0, t0, t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(2 * time.Hour)}
	got := readAll(t, a, 0)
	for i, r := range got {
		w := want[i].UTC().Truncate(time.Microsecond).Add(time.Microsecond) // .123456789 up to .123457
		if !r.Time.Equal(w) || r.Time.Location() != time.UTC {
			t.Fatalf("record %d at %v, want %v (UTC, microseconds rounded up)", r.Seq, r.Time, w)
		}
	}
}

func TestCompact(t *testing.T) {
	dsn := pgtest.Schema(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &clock{t: t0}
	l := open(t, dsn, Options{Now: c.Now})
	l.compactChunk = 3 // several transactions per Compact
	ctx := ctxT(t)

	if n, err := l.Compact(ctx, t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("Compact of an empty log = %d, %v", n, err)
	}
	for i := range 10 { // seq i+1 at t0 + i s
		c.Set(t0.Add(time.Duration(i) * time.Second))
		appendOK(t, l, entry(fmt.Sprint(i+1), "x"))
	}
	if n, err := l.Compact(ctx, t0); err != nil || n != 0 {
		t.Fatalf("Compact(before the oldest) = %d, %v", n, err)
	}
	if n, err := l.Compact(ctx, t0.Add(5*time.Second)); err != nil || n != 5 {
		t.Fatalf("Compact(t0+5s) = %d, %v; want 5", n, err)
	}
	if s := stats(t, l); s.First != 6 || s.Head != 10 {
		t.Fatalf("Stats = %+v, want First 6 Head 10", s)
	}
	for _, since := range []int64{0, 4} {
		var too *eventlog.TooOldError
		if _, err := l.Read(ctx, since, 10); !errors.As(err, &too) || !errors.Is(err, eventlog.ErrTooOld) || too.First != 6 || too.Since != since {
			t.Fatalf("Read(%d) = %v, want TooOldError{%d, 6}", since, err, since)
		}
	}
	if got := readAll(t, l, 5); len(got) != 5 || got[0].Seq != 6 {
		t.Fatalf("Read(5) = %+v", got)
	}
	// A record whose ID was compacted away is stored anew.
	c.Set(t0.Add(10 * time.Second))
	if res := appendOK(t, l, entry("1", "again")); res[0] != (eventlog.Result{Seq: 11}) {
		t.Fatalf("re-append of a compacted id = %+v", res[0])
	}

	if n, err := l.Compact(ctx, t0.Add(time.Hour)); err != nil || n != 5 {
		t.Fatalf("Compact(everything) = %d, %v; want 5 (never the latest)", n, err)
	}
	if s := stats(t, l); s.First != 11 || s.Head != 11 {
		t.Fatalf("Stats = %+v, want First = Head = 11", s)
	}
	l.Close()

	l = open(t, dsn, Options{Now: c.Now})
	if s := stats(t, l); s.First != 11 || s.Head != 11 {
		t.Fatalf("Stats after reopen = %+v", s)
	}
	if res := appendOK(t, l, entry("12", "")); res[0].Seq != 12 {
		t.Fatalf("Append after compaction = %+v", res[0])
	}
	if got := readAll(t, l, 10); len(got) != 2 {
		t.Fatalf("Read(10) = %+v", got)
	}
}

// TestCompactEmptiedTable: should the rows go (by hand), the metadata
// table still knows the bounds, and the sequence goes on.
func TestCompactEmptiedTable(t *testing.T) {
	dsn := pgtest.Schema(t)
	l := open(t, dsn, Options{})
	appendOK(t, l, entry("a", ""), entry("b", ""), entry("c", ""))
	if n, err := l.Compact(ctxT(t), time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	if _, err := sqlDB(t, dsn).Exec("DELETE FROM zeroci_events"); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, l); s.First != 3 || s.Head != 3 {
		t.Fatalf("Stats = %+v", s)
	}
	if res := appendOK(t, l, entry("d", "")); res[0].Seq != 4 {
		t.Fatalf("Append = %+v, want seq 4", res[0])
	}
}

func TestLargeAppend(t *testing.T) {
	l := open(t, pgtest.Schema(t), Options{})
	l.stmtBytes = 10000 // many INSERT statements in one transaction
	in := make([]eventlog.Entry, eventlog.MaxBatch)
	for i := range in {
		in[i] = eventlog.Entry{ID: fmt.Sprint(i), Body: []byte(strings.Repeat(string(rune('a'+i%26)), 200))}
	}
	in = append(in[:eventlog.MaxBatch-1], eventlog.Entry{ID: "big", Body: make([]byte, eventlog.MaxBodyLen)})
	res := appendOK(t, l, in...)
	for i, r := range res {
		if r.Seq != int64(i+1) || r.Duplicate {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	if got := l.commits.Load(); got != 1 {
		t.Fatalf("%d commits for one Append", got)
	}
	got := readAll(t, l, 0)
	if len(got) != len(in) {
		t.Fatalf("%d records, want %d", len(got), len(in))
	}
	for i, r := range got {
		if r.ID != in[i].ID || string(r.Body) != string(in[i].Body) {
			t.Fatalf("record %d differs", i)
		}
	}
}

// TestConnectionsKilled: when the server drops the Log's connections, the
// failure is reported, and the Log recovers with the pool's new ones.
func TestConnectionsKilled(t *testing.T) {
	dsn := pgtest.Schema(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	app := "pglog-" + strings.TrimPrefix(u.Query().Get("search_path"), "zt_")
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	l := open(t, u.String(), Options{})
	appendOK(t, l, entry("a", ""))
	if _, err := l.Read(ctxT(t), 0, 1); err != nil {
		t.Fatal(err)
	}

	var killed int
	err = sqlDB(t, dsn).QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1`, app).Scan(&killed)
	if err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatalf("no session named %s to kill", app)
	}
	var seq int64
	eventually(t, "an Append to succeed again", func() bool {
		res, err := l.Append(context.Background(), []eventlog.Entry{entry("b", "")})
		if err != nil {
			return false
		}
		seq = res[0].Seq
		return true
	})
	if seq != 2 {
		t.Fatalf("b at %d, want 2", seq)
	}
	if got := readAll(t, l, 0); len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
}
