package blobstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/zeroci/zeroci/modules/blob/blobstore"
)

// testRoundTrip: what is put reads back whole, for empty, tiny, binary and
// large content, of known and unknown size, with and without an expected
// digest.
func testRoundTrip(t *testing.T, s Subject) {
	b := s.Backend
	binary := make([]byte, 4*256)
	for i := range binary {
		binary[i] = byte(i)
	}
	large := randomBytes(1, largeSize)
	cases := []struct {
		name    string
		content []byte
		size    int64 // -2: the content's length
		sha     bool
		oneByte bool // read one byte at a time
	}{
		{name: "empty", content: nil, size: -2},
		{name: "empty-unknown-size", content: nil, size: -1},
		{name: "one-byte", content: []byte{0}, size: -2, sha: true},
		{name: "binary", content: binary, size: -2, oneByte: true},
		{name: "large", content: large, size: -2},
		{name: "large-unknown-size", content: large, size: -1},
		{name: "large-with-digest", content: large, size: -1, sha: true},
	}
	for _, c := range cases {
		key := "rt/" + c.name
		opts := blobstore.PutOptions{ContentType: "application/x-test", Size: c.size}
		if c.size == -2 {
			opts.Size = int64(len(c.content))
		}
		if c.sha {
			opts.SHA256 = sha(c.content)
		}
		r := stream(c.content)
		if c.oneByte {
			r = iotest.OneByteReader(r)
		}
		info, err := b.Put(ctxFor(t), key, r, opts)
		if err != nil {
			t.Fatalf("%s: Put: %v", c.name, err)
		}
		checkInfo(t, c.name+": Put", info, key, c.content, opts.ContentType)
		got := mustRead(t, b, key, c.content)
		sameInfo(t, c.name+": Get's Info", got, info)
		sameInfo(t, c.name+": Stat", mustStat(t, b, key), info)
	}
}

// testInfo: content type (given or default) and modification time.
func testInfo(t *testing.T, s Subject) {
	b := s.Backend
	before := time.Now()
	typed := mustPut(t, b, "info/typed", []byte("hello"), "text/plain; charset=utf-8")
	untyped := mustPut(t, b, "info/untyped", []byte("hello"), "")
	after := time.Now()
	for _, info := range []blobstore.Info{typed, untyped} {
		// Some services keep whole seconds.
		if info.ModTime.Before(before.Truncate(time.Second)) || info.ModTime.After(after.Add(time.Second)) {
			t.Fatalf("%q: ModTime %v, not within the Put (%v .. %v)", info.Key, info.ModTime, before, after)
		}
		sameInfo(t, "Stat", mustStat(t, b, info.Key), info)
	}
	if untyped.ContentType != blobstore.DefaultContentType {
		t.Fatalf("ContentType %q stored for an empty one; want %q", untyped.ContentType, blobstore.DefaultContentType)
	}
	later := mustPut(t, b, "info/typed", []byte("hello again"), "text/plain")
	if later.ModTime.Before(typed.ModTime) {
		t.Fatalf("ModTime went back on overwrite: %v, then %v", typed.ModTime, later.ModTime)
	}
}

// testRanges: partial reads of small, large and empty blobs.
func testRanges(t *testing.T, s Subject) {
	b := s.Backend
	for _, content := range [][]byte{randomBytes(2, 1000), randomBytes(3, largeSize)} {
		key := fmt.Sprintf("ranges/%d", len(content))
		info := mustPut(t, b, key, content, "")
		size := int64(len(content))
		cases := []struct {
			off, length int64
			from, to    int64 // expected content[from:to]
			err         error
		}{
			{off: 0, length: -1, from: 0, to: size},
			{off: 0, length: 10, from: 0, to: 10},
			{off: size / 2, length: 10, from: size / 2, to: size/2 + 10},
			{off: size - 10, length: 10, from: size - 10, to: size},
			{off: size - 5, length: 10, from: size - 5, to: size},
			{off: size - 10, length: -1, from: size - 10, to: size},
			{off: 1, length: size, from: 1, to: size},
			{off: 0, length: size + 100, from: 0, to: size},
			{off: 0, length: 0, from: 0, to: 0},
			{off: 10, length: 0, from: 10, to: 10},
			{off: size, length: -1, from: size, to: size},
			{off: size, length: 5, from: size, to: size},
			{off: size + 1, length: -1, err: blobstore.ErrRange},
			{off: size + 1, length: 0, err: blobstore.ErrRange},
			{off: size + 1000, length: 5, err: blobstore.ErrRange},
			{off: -1, length: 5, err: blobstore.ErrRange},
		}
		for _, c := range cases {
			data, got, err := read(t, b, key, c.off, c.length)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("Get(%q, %d, %d) of %d bytes: %s; want %v", key, c.off, c.length, size, describe(err), c.err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Get(%q, %d, %d) of %d bytes: %v", key, c.off, c.length, size, err)
			}
			if !bytes.Equal(data, content[c.from:c.to]) {
				t.Fatalf("Get(%q, %d, %d) of %d bytes: %d bytes, not bytes %d..%d", key, c.off, c.length, size, len(data), c.from, c.to)
			}
			sameInfo(t, fmt.Sprintf("Get(%q, %d, %d)'s Info", key, c.off, c.length), got, info)
		}
	}
	mustPut(t, b, "ranges/empty", nil, "")
	for _, c := range []struct{ off, length int64 }{{0, -1}, {0, 0}, {0, 5}} {
		if data, _, err := read(t, b, "ranges/empty", c.off, c.length); err != nil || len(data) != 0 {
			t.Fatalf("Get(empty, %d, %d): %d bytes, %s; want nothing, no error", c.off, c.length, len(data), describe(err))
		}
	}
	if _, _, err := read(t, b, "ranges/empty", 1, -1); !errors.Is(err, blobstore.ErrRange) {
		t.Fatalf("Get(empty, 1, -1): %s; want ErrRange", describe(err))
	}
}

// testWholeReadChecksum: a read of the whole blob notices content that no
// longer matches its digest.
func testWholeReadChecksum(t *testing.T, s Subject) {
	if s.Corrupt == nil {
		t.Skip("Subject.Corrupt is nil")
	}
	b := s.Backend
	for _, content := range [][]byte{randomBytes(4, 1000), randomBytes(5, largeSize)} {
		key := fmt.Sprintf("corrupt/%d", len(content))
		mustPut(t, b, key, content, "")
		if err := s.Corrupt(key); err != nil {
			t.Fatalf("Corrupt(%q): %v", key, err)
		}
		for _, length := range []int64{-1, int64(len(content)), int64(len(content)) + 1} {
			if _, _, err := read(t, b, key, 0, length); !errors.Is(err, blobstore.ErrChecksum) {
				t.Fatalf("whole read (0, %d) of corrupted %q: %s; want ErrChecksum", length, key, describe(err))
			}
		}
	}
}

// testWrongChecksum: a Put whose content does not match the expected
// digest stores nothing and leaves an older blob under the key intact.
func testWrongChecksum(t *testing.T, s Subject) {
	b := s.Backend
	for _, n := range []int{1000, largeSize} {
		content := randomBytes(6, n)
		wrong := sha(randomBytes(7, n))
		for _, size := range []int64{int64(n), -1} {
			key := fmt.Sprintf("wrongsum/%d/%d", n, size)
			_, err := b.Put(ctxFor(t), key, stream(content), blobstore.PutOptions{Size: size, SHA256: wrong})
			if !errors.Is(err, blobstore.ErrChecksum) {
				t.Fatalf("Put(%q) with a wrong SHA256: %s; want ErrChecksum", key, describe(err))
			}
			mustBeAbsent(t, b, key)
			checkNoLeftovers(t, s, "a Put with a wrong SHA256")

			old := mustPut(t, b, key, []byte("the old one"), "text/old")
			_, err = b.Put(ctxFor(t), key, stream(content), blobstore.PutOptions{Size: size, SHA256: strings.ToUpper(wrong)})
			if !errors.Is(err, blobstore.ErrChecksum) {
				t.Fatalf("Put(%q) over a blob with a wrong SHA256: %s; want ErrChecksum", key, describe(err))
			}
			sameInfo(t, "Stat after the failed overwrite", mustStat(t, b, key), old)
			mustRead(t, b, key, []byte("the old one"))
			checkNoLeftovers(t, s, "a Put with a wrong SHA256")
		}
	}
}

// testWrongSize: content longer or shorter than PutOptions.Size stores
// nothing.
func testWrongSize(t *testing.T, s Subject) {
	b := s.Backend
	for _, n := range []int{1000, largeSize} {
		content := randomBytes(8, n)
		for _, size := range []int64{0, int64(n) - 1, int64(n) + 1} {
			key := fmt.Sprintf("wrongsize/%d/%d", n, size)
			_, err := b.Put(ctxFor(t), key, stream(content), blobstore.PutOptions{Size: size})
			if !errors.Is(err, blobstore.ErrChecksum) {
				t.Fatalf("Put(%q) of %d bytes with Size %d: %s; want ErrChecksum", key, n, size, describe(err))
			}
			mustBeAbsent(t, b, key)
			checkNoLeftovers(t, s, "a Put of the wrong size")
		}
	}
}

// testBadOptions: options that cannot be valid are refused.
func testBadOptions(t *testing.T, s Subject) {
	b := s.Backend
	for _, opts := range []blobstore.PutOptions{
		{Size: -1, SHA256: "abc"},
		{Size: -1, SHA256: strings.Repeat("g", 64)},
		{Size: -1, ContentType: "text/plain\r\nX-Evil: 1"},
		{Size: -1, ContentType: strings.Repeat("a", blobstore.MaxContentTypeLen+1)},
		{Size: -2},
	} {
		_, err := b.Put(ctxFor(t), "badopts", stream([]byte("x")), opts)
		if !errors.Is(err, blobstore.ErrInvalidArgument) {
			t.Fatalf("Put with %+v: %s; want ErrInvalidArgument", opts, describe(err))
		}
		mustBeAbsent(t, b, "badopts")
	}
}

// testCancelledPut: a Put whose context ends mid-stream stores nothing and
// leaves an older blob intact.
func testCancelledPut(t *testing.T, s Subject) {
	b := s.Backend
	content := randomBytes(9, largeSize)
	for _, at := range []int{0, 100, largeSize / 2, largeSize - 1000} {
		for _, withOld := range []bool{false, true} {
			key := fmt.Sprintf("cancel/%d/%v", at, withOld)
			var old blobstore.Info
			if withOld {
				old = mustPut(t, b, key, []byte("old"), "")
			}
			r, ctx := cancelAfter(t, content, at)
			_, err := b.Put(ctx, key, r, blobstore.PutOptions{Size: -1})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Put(%q) cancelled after %d bytes: %s; want context.Canceled", key, at, describe(err))
			}
			if withOld {
				sameInfo(t, "Stat after a cancelled overwrite", mustStat(t, b, key), old)
				mustRead(t, b, key, []byte("old"))
			} else {
				mustBeAbsent(t, b, key)
			}
			checkNoLeftovers(t, s, "a cancelled Put")
		}
	}
}

// testReaderError: a Put whose reader fails mid-stream returns the
// reader's error and stores nothing.
func testReaderError(t *testing.T, s Subject) {
	b := s.Backend
	boom := errors.New("boom from the reader")
	content := randomBytes(10, largeSize)
	for _, at := range []int{0, 100, largeSize / 2, largeSize - 1000} {
		for _, withOld := range []bool{false, true} {
			key := fmt.Sprintf("readerr/%d/%v", at, withOld)
			var old blobstore.Info
			if withOld {
				old = mustPut(t, b, key, []byte("old"), "")
			}
			r := &errAfterReader{content: content, at: at, hook: func() error { return boom }}
			_, err := b.Put(ctxFor(t), key, r, blobstore.PutOptions{Size: int64(len(content))})
			if !errors.Is(err, boom) {
				t.Fatalf("Put(%q) with a reader failing after %d bytes: %s; want the reader's error", key, at, describe(err))
			}
			if withOld {
				sameInfo(t, "Stat after a failed overwrite", mustStat(t, b, key), old)
				mustRead(t, b, key, []byte("old"))
			} else {
				mustBeAbsent(t, b, key)
			}
			checkNoLeftovers(t, s, "a Put whose reader failed")
		}
	}
}

// testOverwrite: a Put replaces the blob under its key, large by small and
// small by large.
func testOverwrite(t *testing.T, s Subject) {
	b := s.Backend
	for i, content := range [][]byte{randomBytes(11, largeSize), []byte("small"), randomBytes(12, largeSize-1), nil} {
		info := mustPut(t, b, "over/write", content, fmt.Sprintf("application/x-v%d", i))
		sameInfo(t, "Get's Info", mustRead(t, b, "over/write", content), info)
	}
}

// testConcurrentWriters: concurrent Puts of one key end with exactly one
// of them stored, whole.
func testConcurrentWriters(t *testing.T, s Subject) {
	b := s.Backend
	const writers = 8
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = randomBytes(uint64(100+i), 3<<19+1000*i) // 1.5 MiB and a bit
	}
	start := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range contents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := b.Put(ctxFor(t), "race/key", stream(contents[i]), blobstore.PutOptions{Size: -1})
			if err != nil {
				err = fmt.Errorf("writer %d: %w", i, err)
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	data, info, err := read(t, b, "race/key", 0, -1)
	if err != nil {
		t.Fatalf("Get after concurrent Puts: %v", err)
	}
	for _, c := range contents {
		if bytes.Equal(data, c) {
			checkInfo(t, "Get after concurrent Puts", info, "race/key", c, "")
			return
		}
	}
	t.Fatalf("after concurrent Puts: %d bytes (sha256 %s), none of the writers' contents", len(data), sha(data))
}

// listKeys are keys that share prefixes in every way that matters.
var listKeys = []string{
	"a", "a/b", "a/b c", "a/b/c", "a/b/d", "a/bc", "a/bc/d", "ab", "b/x", "z", "ü/1",
}

// testList: every prefix, every page size, the right keys in order.
func testList(t *testing.T, s Subject) {
	b := s.Backend
	for _, key := range listKeys {
		mustPut(t, b, key, []byte(key), "")
	}
	for _, prefix := range []string{"", "a", "a/", "a/b", "a/b/", "a/bc", "a/b/c", "ab", "b/", "b/x", "c", "ü/", "zz"} {
		var want []string
		for _, key := range listKeys {
			if strings.HasPrefix(key, prefix) {
				want = append(want, key)
			}
		}
		slices.Sort(want)
		limits := []int{0, 1, 2, 3, len(want) - 1, len(want), len(want) + 1}
		for _, limit := range slices.Compact(slices.Sorted(slices.Values(limits))) {
			if limit < 0 {
				continue
			}
			var got []string
			for _, info := range listAll(t, b, prefix, limit) {
				got = append(got, info.Key)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("List(%q) in pages of %d: %q; want %q", prefix, limit, got, want)
			}
		}
	}
	// Pages are full but the last.
	infos, next, err := b.List(ctxFor(t), "a/", "", 2)
	if err != nil || len(infos) != 2 || next == "" {
		t.Fatalf("List(a/, limit 2): %d blobs, next %q, %s; want 2 and a next token", len(infos), next, describe(err))
	}
}

// testListInfo: List reports what Stat reports.
func testListInfo(t *testing.T, s Subject) {
	b := s.Backend
	mustPut(t, b, "li/small", []byte("small"), "text/plain")
	mustPut(t, b, "li/large", randomBytes(13, largeSize), "")
	mustPut(t, b, "li/empty", nil, "application/x-empty")
	infos := listAll(t, b, "li/", 0)
	if len(infos) != 3 {
		t.Fatalf("List(li/): %d blobs; want 3", len(infos))
	}
	for _, info := range infos {
		sameInfo(t, "List's Info of "+info.Key, info, mustStat(t, b, info.Key))
	}
}

// testListInvalid: invalid prefixes and page tokens are refused.
func testListInvalid(t *testing.T, s Subject) {
	b := s.Backend
	mustPut(t, b, "x/y", []byte("y"), "")
	for _, prefix := range []string{"../", "/x", "x//", "x/../", "x\x00", "./x", "x\\y"} {
		if _, _, err := b.List(ctxFor(t), prefix, "", 0); !errors.Is(err, blobstore.ErrInvalidKey) {
			t.Fatalf("List(%q): %s; want ErrInvalidKey", prefix, describe(err))
		}
	}
	for _, token := range []string{"../x", "/x", "x\x00"} {
		if _, _, err := b.List(ctxFor(t), "x/", token, 0); !errors.Is(err, blobstore.ErrInvalidArgument) {
			t.Fatalf("List(x/, token %q): %s; want ErrInvalidArgument", token, describe(err))
		}
	}
}

// testDelete: a deleted blob is gone from Stat, Get and List; deleting a
// missing key is no error; the key can be used again.
func testDelete(t *testing.T, s Subject) {
	b := s.Backend
	mustPut(t, b, "d/x/y", []byte("y"), "")
	z := mustPut(t, b, "d/x/z", []byte("z"), "")
	if err := b.Delete(ctxFor(t), "d/x/y"); err != nil {
		t.Fatalf("Delete(d/x/y): %v", err)
	}
	mustBeAbsent(t, b, "d/x/y")
	if infos := listAll(t, b, "d/", 0); len(infos) != 1 || infos[0].Key != "d/x/z" {
		t.Fatalf("List(d/) after deleting d/x/y: %+v; want only d/x/z", infos)
	}
	sameInfo(t, "Stat of the other blob", mustStat(t, b, "d/x/z"), z)
	for _, key := range []string{"d/x/y", "never/was", "d"} {
		if err := b.Delete(ctxFor(t), key); err != nil {
			t.Fatalf("Delete(%q) of a missing key: %v; want nil", key, err)
		}
	}
	mustPut(t, b, "d/x/y", []byte("again"), "")
	mustRead(t, b, "d/x/y", []byte("again"))
	for _, key := range []string{"d/x/y", "d/x/z"} {
		if err := b.Delete(ctxFor(t), key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
	}
	if infos := listAll(t, b, "d/", 0); len(infos) != 0 {
		t.Fatalf("List(d/) after deleting everything: %+v", infos)
	}
	// The former directory names are free for blobs.
	mustPut(t, b, "d", []byte("d"), "")
	mustPut(t, b, "d/x", []byte("d/x"), "")
	mustRead(t, b, "d", []byte("d"))
	mustRead(t, b, "d/x", []byte("d/x"))
}

// invalidKeys are refused by every method.
var invalidKeys = []string{
	"", "/abs", "../x", "x/..", "a/../b", "./a", "a/./b", "a//b", "a/", "a\x00b", "a\nb", "a\\b",
	"\xff\xfe", strings.Repeat("k", blobstore.MaxKeyLen+1),
}

// testInvalidKeys: every method refuses invalid keys with ErrInvalidKey.
func testInvalidKeys(t *testing.T, s Subject) {
	b := s.Backend
	for _, key := range invalidKeys {
		if _, err := b.Put(ctxFor(t), key, stream([]byte("x")), blobstore.PutOptions{Size: 1}); !errors.Is(err, blobstore.ErrInvalidKey) {
			t.Fatalf("Put(%q): %s; want ErrInvalidKey", key, describe(err))
		}
		if _, _, err := b.Get(ctxFor(t), key, 0, -1); !errors.Is(err, blobstore.ErrInvalidKey) {
			t.Fatalf("Get(%q): %s; want ErrInvalidKey", key, describe(err))
		}
		if _, err := b.Stat(ctxFor(t), key); !errors.Is(err, blobstore.ErrInvalidKey) {
			t.Fatalf("Stat(%q): %s; want ErrInvalidKey", key, describe(err))
		}
		if err := b.Delete(ctxFor(t), key); !errors.Is(err, blobstore.ErrInvalidKey) {
			t.Fatalf("Delete(%q): %s; want ErrInvalidKey", key, describe(err))
		}
	}
	if infos := listAll(t, b, "", 0); len(infos) != 0 {
		t.Fatalf("after Puts of invalid keys, List shows %+v", infos)
	}
}

// testMissing: Stat and Get of a key never stored say ErrNotFound.
func testMissing(t *testing.T, s Subject) {
	b := s.Backend
	mustPut(t, b, "present", []byte("x"), "")
	for _, key := range []string{"absent", "present/child", "presen"} {
		if _, err := b.Stat(ctxFor(t), key); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Stat(%q): %s; want ErrNotFound", key, describe(err))
		}
		for _, r := range []struct{ off, length int64 }{{0, -1}, {0, 10}, {5, -1}, {0, 0}} {
			if _, _, err := read(t, b, key, r.off, r.length); !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("Get(%q, %d, %d): %s; want ErrNotFound", key, r.off, r.length, describe(err))
			}
		}
	}
}

// testKeys: unusual valid keys round-trip and list: characters that need
// escaping in URLs, non-ASCII, a segment too long for a file name, a key
// of the maximum length.
func testKeys(t *testing.T, s Subject) {
	b := s.Backend
	longSeg := strings.Repeat("s", 300)
	seg := strings.Repeat("m", 199)
	maxKey := strings.Repeat(seg+"/", blobstore.MaxKeyLen/200) // 5 segments of 200 bytes
	maxKey += strings.Repeat("e", blobstore.MaxKeyLen-len(maxKey))
	keys := []string{
		"sp ace/plus+%25/q?x#y&z=1",
		"ü/ñ/日本語",
		longSeg + "/" + longSeg,
		"long/" + longSeg,
		maxKey,
		"dot.in/.hidden/a..b",
		"~tilde/-dash/'quote'/\"dq\"",
	}
	if len(maxKey) != blobstore.MaxKeyLen {
		t.Fatalf("test bug: max key has %d bytes", len(maxKey))
	}
	for i, key := range keys {
		content := randomBytes(uint64(200+i), 100+i)
		info := mustPut(t, b, key, content, "")
		sameInfo(t, "Get's Info", mustRead(t, b, key, content), info)
		sameInfo(t, "Stat", mustStat(t, b, key), info)
		infos := listAll(t, b, key, 0)
		if len(infos) != 1 || infos[0].Key != key {
			t.Fatalf("List(%q): %+v; want the key alone", key, infos)
		}
	}
	var got []string
	for _, info := range listAll(t, b, "", 2) {
		got = append(got, info.Key)
	}
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Fatalf("List(\"\"): %q; want %q", got, want)
	}
	for _, key := range keys {
		if err := b.Delete(ctxFor(t), key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
		mustBeAbsent(t, b, key)
	}
}
