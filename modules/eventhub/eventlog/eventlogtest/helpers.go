package eventlogtest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// entry is an Entry whose body is derived from its ID, so any record can be
// checked on its own.
func entry(id string) eventlog.Entry {
	return eventlog.Entry{ID: id, Body: bodyOf(id)}
}

// bodyOf is a body of 0..199 bytes, all byte values, depending on id.
func bodyOf(id string) []byte {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	b := make([]byte, h%200)
	for i := range b {
		h = h*1664525 + 1013904223
		b[i] = byte(h >> 24)
	}
	return b
}

// entries returns n entries with IDs prefix-0, prefix-1, ...
func entries(prefix string, n int) []eventlog.Entry {
	es := make([]eventlog.Entry, n)
	for i := range es {
		es[i] = entry(fmt.Sprintf("%s-%d", prefix, i))
	}
	return es
}

// mustAppend appends and checks every entry got a new, consecutive
// sequence number starting at wantFirst.
func mustAppend(t *testing.T, l eventlog.Log, wantFirst int64, es []eventlog.Entry) []eventlog.Result {
	t.Helper()
	res, err := l.Append(ctxFor(t), es)
	if err != nil {
		t.Fatalf("Append of %d entries: %v", len(es), err)
	}
	if len(res) != len(es) {
		t.Fatalf("Append of %d entries: %d results", len(es), len(res))
	}
	for i, r := range res {
		if want := (eventlog.Result{Seq: wantFirst + int64(i)}); r != want {
			t.Fatalf("Append: result %d (id %q) = %+v, want %+v", i, es[i].ID, r, want)
		}
	}
	return res
}

// readAll reads every record after since, page by page.
func readAll(t *testing.T, l eventlog.Log, since int64) []eventlog.Record {
	t.Helper()
	var all []eventlog.Record
	for {
		recs, err := l.Read(ctxFor(t), since, 1000)
		if err != nil {
			t.Fatalf("Read(%d, 1000): %v", since, err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		since = recs[len(recs)-1].Seq
	}
}

// checkRecords checks recs are exactly es, with consecutive sequence
// numbers from first.
func checkRecords(t *testing.T, recs []eventlog.Record, first int64, es []eventlog.Entry) {
	t.Helper()
	if len(recs) != len(es) {
		t.Fatalf("got %d records, want %d", len(recs), len(es))
	}
	for i, r := range recs {
		e := es[i]
		if r.Seq != first+int64(i) || r.ID != e.ID || !bytes.Equal(r.Body, e.Body) {
			t.Fatalf("record %d: seq %d id %q body of %d bytes; want seq %d id %q body of %d bytes (equal: %v)",
				i, r.Seq, r.ID, len(r.Body), first+int64(i), e.ID, len(e.Body), bytes.Equal(r.Body, e.Body))
		}
	}
}

// mustStats returns the log's Stats, checking First and Head.
func mustStats(t *testing.T, l eventlog.Log, first, head int64) eventlog.Stats {
	t.Helper()
	st, err := l.Stats(ctxFor(t))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.First != first || st.Head != head {
		t.Fatalf("Stats: First %d Head %d, want First %d Head %d", st.First, st.Head, first, head)
	}
	if st.Bytes < 0 {
		t.Fatalf("Stats: Bytes %d < 0", st.Bytes)
	}
	return st
}

// mustClose closes l, and again to check Close is idempotent.
func mustClose(t *testing.T, l eventlog.Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil", err)
	}
}

// describe prints an error with its type, for failure messages.
func describe(err error) string {
	if err == nil {
		return "no error"
	}
	var tooOld *eventlog.TooOldError
	if errors.As(err, &tooOld) {
		return fmt.Sprintf("%v (*TooOldError %+v)", err, *tooOld)
	}
	return fmt.Sprintf("%v (%T)", err, err)
}
