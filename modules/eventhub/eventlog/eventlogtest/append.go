package eventlogtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// testEmpty: a new log has First 1, Head 0 and nothing to read.
func testEmpty(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	mustStats(t, l, 1, 0)
	for _, since := range []int64{0, 1, 100} {
		recs, err := l.Read(ctxFor(t), since, 10)
		if err != nil || len(recs) != 0 {
			t.Fatalf("Read(%d, 10) of an empty log: %d records, %s; want none, no error", since, len(recs), describe(err))
		}
	}
}

// testAppendOne: one entry gets seq 1 and reads back.
func testAppendOne(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	es := []eventlog.Entry{{ID: "one", Body: []byte(`{"type":"test"}`)}}
	mustAppend(t, l, 1, es)
	mustStats(t, l, 1, 1)
	checkRecords(t, readAll(t, l, 0), 1, es)
}

// testAppendMany: batches of different sizes get consecutive sequence
// numbers across calls.
func testAppendMany(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	var all []eventlog.Entry
	next := int64(1)
	for i, n := range []int{1, 5, 2, 100, 1, 37} {
		es := entries(fmt.Sprintf("batch%d", i), n)
		mustAppend(t, l, next, es)
		next += int64(n)
		all = append(all, es...)
	}
	mustStats(t, l, 1, next-1)
	checkRecords(t, readAll(t, l, 0), 1, all)
}

// testReadPagination: Read honours since and limit.
func testReadPagination(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	es := entries("p", 100)
	mustAppend(t, l, 1, es)
	for _, limit := range []int{1, 7, 33, 100, eventlog.MaxReadLimit} {
		var got []eventlog.Record
		for since := int64(0); ; {
			recs, err := l.Read(ctxFor(t), since, limit)
			if err != nil {
				t.Fatalf("Read(%d, %d): %v", since, limit, err)
			}
			if len(recs) == 0 {
				break
			}
			if want := min(limit, 100-int(since)); len(recs) != want {
				t.Fatalf("Read(%d, %d): %d records, want %d", since, limit, len(recs), want)
			}
			got = append(got, recs...)
			since = recs[len(recs)-1].Seq
		}
		checkRecords(t, got, 1, es)
	}
	for _, c := range []struct {
		since     int64
		limit     int
		wantFirst int64
		wantN     int
	}{
		{0, 1, 1, 1},
		{41, 3, 42, 3},
		{99, 10, 100, 1},
		{100, 10, 0, 0},
		{1000, 10, 0, 0},
	} {
		recs, err := l.Read(ctxFor(t), c.since, c.limit)
		if err != nil {
			t.Fatalf("Read(%d, %d): %v", c.since, c.limit, err)
		}
		if len(recs) != c.wantN {
			t.Fatalf("Read(%d, %d): %d records, want %d", c.since, c.limit, len(recs), c.wantN)
		}
		if c.wantN > 0 {
			checkRecords(t, recs, c.wantFirst, es[c.wantFirst-1:c.wantFirst-1+int64(c.wantN)])
		}
	}
}

// testBodies: bodies round-trip byte-exact, and neither the appended nor
// the returned slices are shared with the log.
func testBodies(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	all256 := make([]byte, 256)
	for i := range all256 {
		all256[i] = byte(i)
	}
	big := make([]byte, eventlog.MaxBodyLen)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	es := []eventlog.Entry{
		{ID: "nil", Body: nil},
		{ID: "empty", Body: []byte{}},
		{ID: "all-bytes", Body: all256},
		{ID: "zeros", Body: make([]byte, 4096)},
		{ID: "max-body", Body: big},
		{ID: strings.Repeat("i", eventlog.MaxIDLen), Body: []byte("longest id")},
		{ID: "\x00\xff binary id ☃", Body: []byte("id bytes")},
	}
	want := make([]eventlog.Entry, len(es))
	for i, e := range es {
		want[i] = eventlog.Entry{ID: e.ID, Body: bytes.Clone(e.Body)}
	}
	mustAppend(t, l, 1, es)
	for i := range big {
		big[i] = 0 // the caller reuses its buffer
	}
	all256[0] = 1
	recs := readAll(t, l, 0)
	checkRecords(t, recs, 1, want)
	recs[2].Body[0] = 99 // the caller owns what Read returns
	checkRecords(t, readAll(t, l, 0), 1, want)
}

// testDuplicateLaterCall: an ID stored by an earlier Append is not stored
// again; its first seq comes back with Duplicate set.
func testDuplicateLaterCall(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	first := []eventlog.Entry{entry("a"), entry("b")}
	mustAppend(t, l, 1, first)
	res, err := l.Append(ctxFor(t), []eventlog.Entry{{ID: "b", Body: []byte("other body")}, entry("c"), entry("a")})
	if err != nil {
		t.Fatalf("Append with repeated IDs: %v", err)
	}
	want := []eventlog.Result{{Seq: 2, Duplicate: true}, {Seq: 3}, {Seq: 1, Duplicate: true}}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Fatalf("Append with repeated IDs: %+v, want %+v", res, want)
	}
	mustStats(t, l, 1, 3)
	checkRecords(t, readAll(t, l, 0), 1, []eventlog.Entry{entry("a"), entry("b"), entry("c")})
	// A batch of nothing but repeats appends nothing.
	res, err = l.Append(ctxFor(t), []eventlog.Entry{entry("c")})
	if err != nil || len(res) != 1 || res[0] != (eventlog.Result{Seq: 3, Duplicate: true}) {
		t.Fatalf("Append of a repeat only: %+v, %v; want [{3 true}]", res, err)
	}
	mustStats(t, l, 1, 3)
}

// testDuplicateInBatch: an ID repeated within one batch is stored once.
func testDuplicateInBatch(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	l := open(t)
	res, err := l.Append(ctxFor(t), []eventlog.Entry{entry("a"), entry("b"), {ID: "a", Body: []byte("x")}, entry("c"), entry("b")})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	want := []eventlog.Result{{Seq: 1}, {Seq: 2}, {Seq: 1, Duplicate: true}, {Seq: 3}, {Seq: 2, Duplicate: true}}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Fatalf("Append: %+v, want %+v", res, want)
	}
	mustStats(t, l, 1, 3)
	checkRecords(t, readAll(t, l, 0), 1, []eventlog.Entry{entry("a"), entry("b"), entry("c")})
}

// testConcurrentAppenders: 50 callers appending at once get unique,
// gap-free sequence numbers; Read returns exactly their entries, each
// caller's in the order it appended them.
func testConcurrentAppenders(t *testing.T, _ Backend, open func(t *testing.T) eventlog.Log) {
	const callers, perCaller = 50, 24
	l := open(t)
	type appended struct {
		id  string
		seq int64
	}
	got := make([][]appended, callers)
	errs := make(chan error, callers)
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := 0; i < perCaller; {
				n := 1 + (c+i)%3 // batches of 1, 2 and 3
				es := entries(fmt.Sprintf("c%d-%d", c, i), n)
				res, err := l.Append(ctx, es)
				if err != nil {
					errs <- fmt.Errorf("caller %d: Append: %w", c, err)
					return
				}
				for j, r := range res {
					if r.Duplicate {
						errs <- fmt.Errorf("caller %d: new id %s reported as a duplicate of %d", c, es[j].ID, r.Seq)
						return
					}
					got[c] = append(got[c], appended{es[j].ID, r.Seq})
				}
				i += n
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	bySeq := map[int64]string{}
	for c, as := range got {
		total += len(as)
		for i, a := range as {
			if prev, ok := bySeq[a.seq]; ok {
				t.Fatalf("seq %d given to both %s and %s", a.seq, prev, a.id)
			}
			bySeq[a.seq] = a.id
			if i > 0 && a.seq <= as[i-1].seq {
				t.Fatalf("caller %d: %s got seq %d after %s got %d", c, a.id, a.seq, as[i-1].id, as[i-1].seq)
			}
		}
	}
	for seq := int64(1); seq <= int64(total); seq++ {
		if _, ok := bySeq[seq]; !ok {
			t.Fatalf("%d entries appended, but no Append returned seq %d", total, seq)
		}
	}
	mustStats(t, l, 1, int64(total))
	recs := readAll(t, l, 0)
	if len(recs) != total {
		t.Fatalf("Read returned %d records, want %d", len(recs), total)
	}
	for _, r := range recs {
		if id := bySeq[r.Seq]; r.ID != id || !bytes.Equal(r.Body, bodyOf(id)) {
			t.Fatalf("record %d: id %q body of %d bytes, want id %q with its body", r.Seq, r.ID, len(r.Body), id)
		}
	}
}
