package filelog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// writeLog makes a closed log of n records (bodies of 50 bytes) in dir,
// and returns its entries.
func writeLog(t *testing.T, dir string, opts Options, n int) []eventlog.Entry {
	t.Helper()
	l := mustOpen(t, dir, opts)
	es := appendN(t, l, "rec", n, 50)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return es
}

// offsets returns the offset of every record in a segment file, and its size.
func offsets(t *testing.T, path string) ([]int64, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 0; off < len(data); {
		n, err := frameLen(data[off:])
		if err != nil {
			t.Fatalf("%s at %d: %v", path, off, err)
		}
		offs = append(offs, int64(off))
		off += n
	}
	return offs, int64(len(data))
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	names := segmentFiles(t, dir)
	return filepath.Join(dir, names[len(names)-1])
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0x40
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkPrefix checks the log holds exactly es[:head] and appends go on at
// head+1; it returns the entry it appended.
func checkPrefix(t *testing.T, l *Log, es []eventlog.Entry, head int64) eventlog.Entry {
	t.Helper()
	st, err := l.Stats(ctxFor(t))
	if err != nil || st.First != 1 || st.Head != head {
		t.Fatalf("Stats: %+v, %v; want First 1, Head %d", st, err, head)
	}
	recs, err := l.Read(ctxFor(t), 0, eventlog.MaxReadLimit)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(recs)) != head {
		t.Fatalf("Read: %d records, want %d", len(recs), head)
	}
	for i, r := range recs {
		if r.Seq != int64(i)+1 || r.ID != es[i].ID || !bytes.Equal(r.Body, es[i].Body) {
			t.Fatalf("record %d: seq %d id %s, want seq %d id %s with its body", i, r.Seq, r.ID, i+1, es[i].ID)
		}
	}
	e := eventlog.Entry{ID: fmt.Sprintf("appended-at-%d", head+1), Body: []byte("x")}
	res, err := l.Append(ctxFor(t), []eventlog.Entry{e})
	if err != nil || res[0] != (eventlog.Result{Seq: head + 1}) {
		t.Fatalf("Append after recovery: %+v, %v; want seq %d", res, err, head+1)
	}
	return e
}

// TestTornTail: damage at the end of the last segment is truncated to the
// last good record, reported, never served, and appends continue.
func TestTornTail(t *testing.T) {
	next := eventlog.Entry{ID: "rec-10", Body: make([]byte, 50)}
	nextFrame := appendRecord(nil, 11, 1, next)
	for _, c := range []struct {
		name string
		// damage changes the segment, given its record offsets and size;
		// it returns the offset recovery should cut at.
		damage func(t *testing.T, path string, offs []int64, size int64) int64
		head   int64
	}{
		{"garbage appended", func(t *testing.T, path string, _ []int64, size int64) int64 {
			appendBytes(t, path, []byte("garbage after the last record"))
			return size
		}, 10},
		{"zeros appended", func(t *testing.T, path string, _ []int64, size int64) int64 {
			appendBytes(t, path, make([]byte, 4096))
			return size
		}, 10},
		{"partial next record", func(t *testing.T, path string, _ []int64, size int64) int64 {
			appendBytes(t, path, nextFrame[:len(nextFrame)-1])
			return size
		}, 10},
		{"three bytes of a length", func(t *testing.T, path string, _ []int64, size int64) int64 {
			appendBytes(t, path, nextFrame[:3])
			return size
		}, 10},
		{"byte flipped in the last record's body", func(t *testing.T, path string, offs []int64, size int64) int64 {
			flipByte(t, path, size-10)
			return offs[9]
		}, 9},
		{"byte flipped in the last record's checksum", func(t *testing.T, path string, offs []int64, size int64) int64 {
			flipByte(t, path, size-1)
			return offs[9]
		}, 9},
		{"last record's length made larger", func(t *testing.T, path string, offs []int64, size int64) int64 {
			flipByte(t, path, offs[9]+1)
			return offs[9]
		}, 9},
		{"last record cut in the middle", func(t *testing.T, path string, offs []int64, size int64) int64 {
			if err := os.Truncate(path, size-20); err != nil {
				t.Fatal(err)
			}
			return offs[9]
		}, 9},
		{"every record cut", func(t *testing.T, path string, offs []int64, size int64) int64 {
			if err := os.Truncate(path, offs[0]+5); err != nil {
				t.Fatal(err)
			}
			return 0
		}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			es := writeLog(t, dir, Options{}, 10)
			path := lastSegment(t, dir)
			offs, _ := offsets(t, path)
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			at := c.damage(t, path, offs, info.Size())
			damaged, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}

			var logged bytes.Buffer
			l := mustOpen(t, dir, Options{Logger: zerolog.New(&logged)})
			rec, ok := l.Recovered()
			want := Recovery{Segment: path, At: at, TruncatedBytes: damaged.Size() - at, Head: c.head}
			rec.Reason = "" // checked for being set below
			if !ok || rec != want {
				t.Fatalf("Recovered: %+v, %v; want %+v", rec, ok, want)
			}
			if r, _ := l.Recovered(); r.Reason == "" {
				t.Error("Recovery.Reason is empty")
			}
			if !strings.Contains(logged.String(), "torn tail") || !strings.Contains(logged.String(), fmt.Sprintf(`"truncated_bytes":%d`, want.TruncatedBytes)) {
				t.Errorf("log output %q does not report the truncation", logged.String())
			}
			if size := fileSize(t, path); size != at {
				t.Errorf("segment is %d bytes after recovery, want %d", size, at)
			}
			appended := checkPrefix(t, l, es, c.head)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			l = mustOpen(t, dir, Options{})
			if rec, ok := l.Recovered(); ok {
				t.Fatalf("second Open after recovery reports %+v", rec)
			}
			es = append(es[:c.head], appended)
			checkPrefix(t, l, es, c.head+1)
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// TestTornTailWithRecordInBody: a torn record whose body holds the bytes of
// a valid record (with an implausible sequence number) is still a torn tail.
func TestTornTailWithRecordInBody(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	es := appendN(t, l, "rec", 3, 10)
	inner := appendRecord(nil, 1_000_000, 1, eventlog.Entry{ID: "inner", Body: []byte("x")})
	if _, err := l.Append(ctxFor(t), []eventlog.Entry{{ID: "outer", Body: append(inner, make([]byte, 100)...)}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := lastSegment(t, dir)
	if err := os.Truncate(path, fileSize(t, path)-50); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	if _, ok := l.Recovered(); !ok {
		t.Fatal("no recovery reported")
	}
	checkPrefix(t, l, es, 3)
}

// TestEmptyLastSegment: a crash right after a segment file was created
// leaves it empty; the log opens and appends into it.
func TestEmptyLastSegment(t *testing.T) {
	dir := t.TempDir()
	es := writeLog(t, dir, Options{}, 5)
	if err := os.WriteFile(filepath.Join(dir, segmentName(6)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, dir, Options{})
	if rec, ok := l.Recovered(); ok {
		t.Fatalf("Recovered: %+v for an empty segment", rec)
	}
	checkPrefix(t, l, es, 5)
	if size := fileSize(t, filepath.Join(dir, segmentName(6))); size == 0 {
		t.Fatal("the record after recovery did not go to the empty last segment")
	}
}

// TestCorrupt: damage that is not a torn tail fails Open with ErrCorrupt and
// leaves every file as it was.
func TestCorrupt(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"body byte flipped mid-segment", func(t *testing.T, dir string) {
			path := lastSegment(t, dir)
			offs, _ := offsets(t, path)
			flipByte(t, path, offs[5]-10)
		}},
		{"length flipped mid-segment", func(t *testing.T, dir string) {
			path := lastSegment(t, dir)
			offs, _ := offsets(t, path)
			flipByte(t, path, offs[5])
		}},
		{"torn tail in a sealed segment", func(t *testing.T, dir string) {
			path := filepath.Join(dir, segmentFiles(t, dir)[0])
			if err := os.Truncate(path, fileSize(t, path)-1); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage after a sealed segment", func(t *testing.T, dir string) {
			appendBytes(t, filepath.Join(dir, segmentFiles(t, dir)[0]), []byte("junk"))
		}},
		{"segment missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, segmentFiles(t, dir)[1])); err != nil {
				t.Fatal(err)
			}
		}},
		{"segment renamed", func(t *testing.T, dir string) {
			names := segmentFiles(t, dir)
			first, _ := parseSegmentName(names[len(names)-1])
			if err := os.Rename(filepath.Join(dir, names[len(names)-1]), filepath.Join(dir, segmentName(first+1))); err != nil {
				t.Fatal(err)
			}
		}},
		{"intact records out of order", func(t *testing.T, dir string) {
			// The last segment's records 2 and 3 swapped: every checksum holds.
			path := lastSegment(t, dir)
			offs, size := offsets(t, path)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			end := size
			if len(offs) > 3 {
				end = offs[3]
			}
			swapped := slices.Concat(data[:offs[1]], data[offs[2]:end], data[offs[1]:offs[2]], data[end:])
			if err := os.WriteFile(path, swapped, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, Options{SegmentBytes: 900}, 30) // three segments of records of about 80 bytes
			c.damage(t, dir)
			before := snapshot(t, dir)
			l, err := Open(dir, Options{SegmentBytes: 900})
			if !errors.Is(err, eventlog.ErrCorrupt) {
				if l != nil {
					_ = l.Close()
				}
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			t.Logf("Open: %v", err)
			if after := snapshot(t, dir); after != before {
				t.Fatalf("Open that failed changed the files:\n%s\nnow:\n%s", before, after)
			}
			// The lock was released.
			if err := lockAndRelease(dir); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// snapshot describes every file of dir and its contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d %x\n", e.Name(), len(data), data)
	}
	return b.String()
}

func lockAndRelease(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return lockDir(d)
}
