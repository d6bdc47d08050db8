package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/fsstore"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/rpc"
)

// eachTransport runs fn as a subtest per transport.
func eachTransport(t *testing.T, opts blob.Options, fn func(t *testing.T, e *env)) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) { fn(t, newEnv(t, kind, opts)) })
	}
}

func code(err error) contracts.Code { return contracts.CodeOf(err) }

// Round trips of sizes around the chunk size, then ranges of the largest.
func TestRoundTrip(t *testing.T) {
	eachTransport(t, blob.Options{ChunkSize: testChunk}, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		sizes := []int{0, 1, testChunk - 1, testChunk, testChunk + 1, 5*testChunk + 3}
		var big []byte
		for i, n := range sizes {
			data := randBytes(uint64(i), n)
			key := fmt.Sprintf("rt/%d", n)
			info, err := blobclient.Put(ctx, e.client, key, "application/octet-stream", bytes.NewReader(data))
			if err != nil {
				t.Fatalf("put %d bytes: %v", n, err)
			}
			if info.Key != key || info.Size != int64(n) || info.SHA256 != sha(data) ||
				info.ContentType != "application/octet-stream" || info.ModTime.IsZero() {
				t.Fatalf("put %d bytes: info %+v", n, info)
			}
			var got bytes.Buffer
			ginfo, err := blobclient.Get(ctx, e.client, key, &got)
			if err != nil {
				t.Fatalf("get %d bytes: %v", n, err)
			}
			if !bytes.Equal(got.Bytes(), data) || ginfo.SHA256 != info.SHA256 || ginfo.Size != info.Size {
				t.Fatalf("get %d bytes: %d bytes back, info %+v", n, got.Len(), ginfo)
			}
			st, err := blobclient.Stat(ctx, e.client, key)
			if err != nil || st.SHA256 != info.SHA256 || !st.ModTime.Equal(info.ModTime) || st.ContentType != info.ContentType {
				t.Fatalf("stat: %+v %v, want %+v", st, err, info)
			}
			big = data
		}
		key := fmt.Sprintf("rt/%d", len(big))
		n := int64(len(big))
		tr := blobclient.Transfer{Window: 3, ReadChunk: 1000}
		for _, r := range []struct{ off, length int64 }{
			{0, 10}, {0, 1000}, {0, 1001}, {testChunk - 1, 2}, {testChunk - 500, 3000}, {7, n - 7},
			{n - 1, 1}, {n, 0}, {0, 0}, {12345, -1}, {n, -1}, {0, -1},
		} {
			var got bytes.Buffer
			if err := tr.GetRange(ctx, e.client, key, r.off, r.length, &got); err != nil {
				t.Fatalf("range %d+%d: %v", r.off, r.length, err)
			}
			end := r.off + r.length
			if r.length < 0 {
				end = n
			}
			if !bytes.Equal(got.Bytes(), big[r.off:end]) {
				t.Fatalf("range %d+%d: got %d bytes, not the blob's", r.off, r.length, got.Len())
			}
		}
		var sink bytes.Buffer
		if err := tr.GetRange(ctx, e.client, key, 10, n, &sink); !errors.Is(err, blobclient.ErrRange) || sink.Len() != 0 {
			t.Fatalf("range past the end: %v, %d bytes written; want ErrRange, none", err, sink.Len())
		}
		if err := tr.GetRange(ctx, e.client, key, n+1, 1, &sink); code(err) != contracts.CodeInvalidArgument {
			t.Fatalf("range after the end: %v, want invalid_argument", err)
		}
		// A read of the whole blob in one get.
		c, err := rpc.Call[contracts.BlobChunk](ctx, e.client, contracts.GetBlob{Key: key})
		if err != nil || !bytes.Equal(c.Data, big) || !c.EOF || c.BlobSHA256 != sha(big) {
			t.Fatalf("whole get: %d bytes, eof %t, %v", len(c.Data), c.EOF, err)
		}
	})
}

// The chunk protocol, request by request.
func TestChunks(t *testing.T) {
	opts := blob.Options{ChunkSize: testChunk, ReorderWait: time.Second, ReorderWindow: 4}
	eachTransport(t, opts, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		data := randBytes(7, 8*testChunk)
		up, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "c/k", ContentType: "text/plain"})
		if err != nil || up.ChunkSize != testChunk {
			t.Fatalf("begin: %+v %v", up, err)
		}
		send := func(off, n int) (int64, error) {
			p := data[off : off+n]
			rep, err := rpc.Call[contracts.Received](ctx, e.client,
				contracts.PutChunk{UploadID: up.UploadID, Offset: int64(off), Data: p, SHA256: contracts.BlobSHA256(p)})
			return rep.Size, err
		}
		expect := func(what string, off, n int, want int64) {
			t.Helper()
			if size, err := send(off, n); err != nil || size != want {
				t.Fatalf("%s: size %d, %v; want %d", what, size, err, want)
			}
		}
		c := testChunk
		expect("first chunk", 0, c, int64(c))
		expect("resend", 0, c, int64(c))
		expect("resend of a part", 10, 100, int64(c))
		expect("overlap", c/2, c, int64(c+c/2))

		// Past the reorder window: refused at once.
		start := time.Now()
		if _, err := send(7*c, c); code(err) != contracts.CodeConflict {
			t.Fatalf("far ahead: %v, want conflict", err)
		}
		if d := time.Since(start); d >= time.Second {
			t.Errorf("far ahead: refused after %v, want at once", d)
		}
		// Ahead within the window: refused once nothing fills the gap.
		start = time.Now()
		if _, err := send(2*c, c); code(err) != contracts.CodeConflict {
			t.Fatalf("gap: %v, want conflict", err)
		}
		if d := time.Since(start); d < time.Second {
			t.Errorf("gap: refused after %v, want a wait of 1s", d)
		}
		// Ahead within the window while the gap is being filled: stored.
		var wg sync.WaitGroup
		var laterErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, laterErr = send(2*c, c)
		}()
		expect("gap filled", c+c/2, c/2, int64(2*c))
		wg.Wait()
		if laterErr != nil {
			t.Fatalf("chunk that waited: %v", laterErr)
		}
		for off := 3 * c; off < len(data); off += c {
			expect("rest", off, c, int64(off+c))
		}

		if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, contracts.PutCommit{UploadID: up.UploadID, Size: int64(len(data)) - 1, SHA256: sha(data)}); code(err) != contracts.CodeConflict {
			t.Fatalf("commit with a wrong size: %v, want conflict", err)
		}
		if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, contracts.PutCommit{UploadID: up.UploadID, Size: int64(len(data)), SHA256: sha(data[1:])}); code(err) != contracts.CodeConflict {
			t.Fatalf("commit with a wrong digest: %v, want conflict", err)
		}
		if _, err := blobclient.Stat(ctx, e.client, "c/k"); code(err) != contracts.CodeNotFound {
			t.Fatalf("stat after refused commits: %v, want not_found", err)
		}
		commit := contracts.PutCommit{UploadID: up.UploadID, Size: int64(len(data)), SHA256: sha(data)}
		info, err := rpc.Call[contracts.BlobInfo](ctx, e.client, commit)
		if err != nil || info.Size != int64(len(data)) || info.SHA256 != sha(data) || info.ContentType != "text/plain" {
			t.Fatalf("commit: %+v %v", info, err)
		}
		again, err := rpc.Call[contracts.BlobInfo](ctx, e.client, commit)
		if err != nil || again != info {
			t.Fatalf("repeated commit: %+v %v, want %+v", again, err, info)
		}
		if _, err := send(0, c); code(err) != contracts.CodeConflict {
			t.Fatalf("chunk after commit: %v, want conflict", err)
		}
		if _, err := rpc.Call[contracts.OK](ctx, e.client, contracts.PutAbort{UploadID: up.UploadID}); code(err) != contracts.CodeConflict {
			t.Fatalf("abort after commit: %v, want conflict", err)
		}
		var got bytes.Buffer
		if _, err := blobclient.Get(ctx, e.client, "c/k", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("get: %d bytes, %v", got.Len(), err)
		}
		if names := entries(t, e.staging()); len(names) != 0 {
			t.Fatalf("staging files left: %v", names)
		}
	})
}

// A refused commit stores nothing and leaves the older blob intact; abort
// drops the upload.
func TestRefusedCommitAndAbort(t *testing.T) {
	eachTransport(t, blob.Options{ChunkSize: testChunk}, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		old := randBytes(1, 3*testChunk)
		if _, err := blobclient.Put(ctx, e.client, "k", "", bytes.NewReader(old)); err != nil {
			t.Fatal(err)
		}
		upload := func(data []byte) contracts.ID {
			up, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "k"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rpc.Call[contracts.Received](ctx, e.client, contracts.PutChunk{UploadID: up.UploadID, Data: data, SHA256: contracts.BlobSHA256(data)}); err != nil {
				t.Fatal(err)
			}
			return up.UploadID
		}
		data := randBytes(2, testChunk)
		id := upload(data)
		if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, contracts.PutCommit{UploadID: id, Size: int64(len(data)), SHA256: sha(old)}); code(err) != contracts.CodeConflict {
			t.Fatalf("commit with a wrong digest: %v, want conflict", err)
		}
		var got bytes.Buffer
		if info, err := blobclient.Get(ctx, e.client, "k", &got); err != nil || info.SHA256 != sha(old) || !bytes.Equal(got.Bytes(), old) {
			t.Fatalf("older blob after a refused commit: %+v %v", info, err)
		}
		if _, err := rpc.Call[contracts.OK](ctx, e.client, contracts.PutAbort{UploadID: id}); err != nil {
			t.Fatalf("abort: %v", err)
		}
		if names := entries(t, e.staging()); len(names) != 0 {
			t.Fatalf("staging files left after abort: %v", names)
		}
		for what, req := range map[string]contracts.Message{
			"chunk":  contracts.PutChunk{UploadID: id, Data: data, SHA256: contracts.BlobSHA256(data)},
			"commit": contracts.PutCommit{UploadID: id, Size: int64(len(data)), SHA256: sha(data)},
			"abort":  contracts.PutAbort{UploadID: id},
		} {
			if _, err := rpc.Do(ctx, e.client, req); code(err) != contracts.CodeNotFound {
				t.Errorf("%s after abort: %v, want not_found", what, err)
			}
		}
		if _, err := rpc.Do(ctx, e.client, contracts.PutChunk{UploadID: contracts.NewID(time.Now()), Data: data, SHA256: contracts.BlobSHA256(data)}); code(err) != contracts.CodeNotFound {
			t.Errorf("chunk of an unknown upload: %v, want not_found", err)
		}
	})
}

// cancelReader cancels a context once it has handed out after bytes, then
// goes on producing data.
type cancelReader struct {
	r      io.Reader
	n      int64
	after  int64
	cancel func()
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

// errReader fails after n bytes.
type errReader struct {
	r   io.Reader
	n   int64
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, e.err
	}
	p = p[:min(int64(len(p)), e.n)]
	n, err := e.r.Read(p)
	e.n -= int64(n)
	return n, err
}

// A Put cancelled or failing midway leaves nothing: no blob, no staging
// file; an older blob under the key stays.
func TestFailedPutLeavesNothing(t *testing.T) {
	eachTransport(t, blob.Options{ChunkSize: testChunk}, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		old := randBytes(3, 1000)
		if _, err := blobclient.Put(ctx, e.client, "f/old", "", bytes.NewReader(old)); err != nil {
			t.Fatal(err)
		}
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := blobclient.Put(pctx, e.client, "f/new", "", &cancelReader{r: stream(1, 50*testChunk), after: 6 * testChunk, cancel: cancel})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled put: %v, want context.Canceled", err)
		}
		boom := errors.New("disk gone")
		_, err = blobclient.Put(ctx, e.client, "f/old", "", &errReader{r: stream(2, 50*testChunk), n: 3*testChunk + 5, err: boom})
		if !errors.Is(err, boom) {
			t.Fatalf("put from a failing reader: %v, want %v", err, boom)
		}
		if _, err := blobclient.Stat(ctx, e.client, "f/new"); code(err) != contracts.CodeNotFound {
			t.Fatalf("stat after cancelled put: %v, want not_found", err)
		}
		if info, err := blobclient.Stat(ctx, e.client, "f/old"); err != nil || info.SHA256 != sha(old) {
			t.Fatalf("older blob after failed put: %+v %v", info, err)
		}
		// Each Put aborted its upload before returning.
		if names := entries(t, e.staging()); len(names) != 0 {
			t.Fatalf("staging files left: %v", names)
		}
	})
}

// Concurrent Puts to one key end with exactly one of them, whole.
func TestConcurrentPuts(t *testing.T) {
	eachTransport(t, blob.Options{ChunkSize: testChunk}, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		const writers = 8
		contents := make(map[string][]byte)
		for i := range writers {
			b := randBytes(uint64(100+i), 2*testChunk+i*1000)
			contents[sha(b)] = b
		}
		var wg sync.WaitGroup
		for _, b := range contents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := blobclient.Put(ctx, e.client, "same/key", "", bytes.NewReader(b)); err != nil {
					t.Errorf("put: %v", err)
				}
			}()
		}
		wg.Wait()
		var got bytes.Buffer
		info, err := blobclient.Get(ctx, e.client, "same/key", &got)
		if err != nil {
			t.Fatal(err)
		}
		if want, ok := contents[info.SHA256]; !ok || !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("final blob (%d bytes, sha256 %s) is none of the writers'", got.Len(), info.SHA256)
		}
	})
}

// Requests a well-behaved client never sends get invalid_argument, and the
// module goes on serving.
func TestMalformed(t *testing.T) {
	eachTransport(t, blob.Options{ChunkSize: testChunk}, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		raw := func(typ, payload string) []byte {
			env := contracts.Envelope{Type: typ, Version: 1, ID: contracts.NewID(time.Now()), Time: time.Now().UTC(), Payload: []byte(payload)}
			b, err := contracts.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		up, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "m/k"})
		if err != nil {
			t.Fatal(err)
		}
		id := up.UploadID.String()
		zeros := strings.Repeat("0", 64)
		hello := contracts.BlobSHA256([]byte("hello"))
		chunk := func(fields string) string { return `{"upload_id":"` + id + `",` + fields + `}` }
		for what, data := range map[string][]byte{
			"garbage":               []byte("not an envelope"),
			"begin: dotdot key":     raw(contracts.TypePutBegin, `{"key":"../etc/passwd"}`),
			"begin: absolute key":   raw(contracts.TypePutBegin, `{"key":"/etc/passwd"}`),
			"begin: empty segment":  raw(contracts.TypePutBegin, `{"key":"a//b"}`),
			"begin: backslash":      raw(contracts.TypePutBegin, `{"key":"a\\b"}`),
			"begin: NUL":            raw(contracts.TypePutBegin, `{"key":"a\u0000b"}`),
			"begin: long key":       raw(contracts.TypePutBegin, `{"key":"`+strings.Repeat("k", 1025)+`"}`),
			"begin: unknown field":  raw(contracts.TypePutBegin, `{"key":"a","admin":true}`),
			"begin: wrong type":     raw(contracts.TypePutBegin, `{"key":7}`),
			"begin: content type":   raw(contracts.TypePutBegin, `{"key":"a","content_type":"text/plain; charset=\u00e9"}`),
			"chunk: wrong digest":   raw(contracts.TypePutChunk, chunk(`"offset":0,"data":"aGVsbG8=","sha256":"`+zeros+`"`)),
			"chunk: negative":       raw(contracts.TypePutChunk, chunk(`"offset":-5,"data":"aGVsbG8=","sha256":"`+hello+`"`)),
			"chunk: no data":        raw(contracts.TypePutChunk, chunk(`"offset":0,"data":"","sha256":"`+contracts.BlobSHA256(nil)+`"`)),
			"chunk: bad base64":     raw(contracts.TypePutChunk, chunk(`"offset":0,"data":"!!!","sha256":"`+hello+`"`)),
			"chunk: bad upload id":  raw(contracts.TypePutChunk, `{"upload_id":"xyz","offset":0,"data":"aGVsbG8=","sha256":"`+hello+`"}`),
			"chunk: huge offset":    raw(contracts.TypePutChunk, chunk(`"offset":1099511627776,"data":"aGVsbG8=","sha256":"`+hello+`"`)),
			"commit: negative size": raw(contracts.TypePutCommit, chunk(`"size":-1,"sha256":"`+zeros+`"`)),
			"commit: short digest":  raw(contracts.TypePutCommit, chunk(`"size":5,"sha256":"abc"`)),
			"commit: upper digest":  raw(contracts.TypePutCommit, chunk(`"size":5,"sha256":"`+strings.ToUpper(hello)+`"`)),
			"abort: zero id":        raw(contracts.TypePutAbort, `{"upload_id":"00000000000000000000000000000000"}`),
			"get: negative length":  raw(contracts.TypeGetBlob, `{"key":"m/k","length":-1}`),
			"get: huge length":      raw(contracts.TypeGetBlob, `{"key":"m/k","length":4194305}`),
			"get: negative offset":  raw(contracts.TypeGetBlob, `{"key":"m/k","offset":-1}`),
			"stat: no key":          raw(contracts.TypeStatBlob, `{}`),
			"list: huge limit":      raw(contracts.TypeListBlobs, `{"limit":100000}`),
			"list: bad prefix":      raw(contracts.TypeListBlobs, `{"prefix":"/x"}`),
			"delete: dot key":       raw(contracts.TypeDeleteBlob, `{"key":"a/./b"}`),
			"reply type":            raw(contracts.TypeBlobInfo, `{}`),
			"trailing data":         raw(contracts.TypeStatBlob, `{"key":"a"} {}`),
		} {
			out, err := e.client.Request(ctx, contracts.ServiceBlob, data)
			if err != nil {
				t.Fatalf("%s: transport: %v", what, err)
			}
			rep, err := contracts.Unmarshal(out)
			if err != nil {
				t.Fatalf("%s: reply does not decode: %v", what, err)
			}
			e, err := contracts.DecodePayload[contracts.Error](rep)
			if err != nil || e.Code != contracts.CodeInvalidArgument {
				t.Errorf("%s: reply %s %+v %v, want invalid_argument", what, rep.Type, e, err)
			}
		}
		// The upload is untouched and the module still serves.
		p := []byte("hello")
		if _, err := rpc.Call[contracts.Received](ctx, e.client, contracts.PutChunk{UploadID: up.UploadID, Data: p, SHA256: hello}); err != nil {
			t.Fatal(err)
		}
		if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, contracts.PutCommit{UploadID: up.UploadID, Size: 5, SHA256: hello}); err != nil {
			t.Fatal(err)
		}
	})
}

// Stat, List, Delete and their errors.
func TestStatListDelete(t *testing.T) {
	e := newEnv(t, "inproc", blob.Options{ChunkSize: testChunk})
	ctx := ctxT(t)
	keys := []string{"a/b", "a/b/c", "a/bc", "b", "ab"}
	for i, k := range keys {
		if _, err := blobclient.Put(ctx, e.client, k, "text/plain", bytes.NewReader(randBytes(uint64(i), i*10))); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/b", "a/b/c", "a/bc"}},
		{"a/b", []string{"a/b", "a/b/c", "a/bc"}},
		{"a/b/", []string{"a/b/c"}},
		{"", []string{"a/b", "a/b/c", "a/bc", "ab", "b"}},
		{"zz", nil},
	} {
		for _, limit := range []int{1, 2, 0} {
			var got []string
			token := ""
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatalf("list %q: no end", c.prefix)
				}
				l, err := blobclient.List(ctx, e.client, c.prefix, token, limit)
				if err != nil {
					t.Fatalf("list %q: %v", c.prefix, err)
				}
				for _, b := range l.Blobs {
					got = append(got, b.Key)
					if b.ContentType != "text/plain" || b.SHA256 == "" {
						t.Errorf("listed %+v", b)
					}
				}
				if token = l.NextPageToken; token == "" {
					break
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("list %q by %d: %v, want %v", c.prefix, limit, got, c.want)
			}
		}
	}
	if _, err := blobclient.Stat(ctx, e.client, "nope"); code(err) != contracts.CodeNotFound {
		t.Fatalf("stat missing: %v", err)
	}
	if _, err := blobclient.Get(ctx, e.client, "nope", io.Discard); code(err) != contracts.CodeNotFound {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := rpc.Call[contracts.BlobChunk](ctx, e.client, contracts.GetBlob{Key: "nope"}); code(err) != contracts.CodeNotFound {
		t.Fatalf("raw get missing: %v", err)
	}
	if err := blobclient.Delete(ctx, e.client, "nope"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
	if err := blobclient.Delete(ctx, e.client, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := blobclient.Stat(ctx, e.client, "a/b"); code(err) != contracts.CodeNotFound {
		t.Fatalf("stat deleted: %v", err)
	}
	if _, err := blobclient.Stat(ctx, e.client, "a/b/c"); err != nil {
		t.Fatalf("stat sibling of deleted: %v", err)
	}
}

// An idle upload is dropped with its staging file.
func TestIdleUploadDropped(t *testing.T) {
	e := newEnv(t, "inproc", blob.Options{ChunkSize: testChunk, UploadTTL: 200 * time.Millisecond})
	ctx := ctxT(t)
	up, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	p := []byte("some")
	if _, err := rpc.Call[contracts.Received](ctx, e.client, contracts.PutChunk{UploadID: up.UploadID, Data: p, SHA256: contracts.BlobSHA256(p)}); err != nil {
		t.Fatal(err)
	}
	if names := entries(t, e.staging()); len(names) != 1 || names[0] != up.UploadID.String() {
		t.Fatalf("staging: %v, want the upload's file", names)
	}
	eventually(t, "idle upload dropped", func() bool { return len(entries(t, e.staging())) == 0 })
	if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, contracts.PutCommit{UploadID: up.UploadID, Size: 4, SHA256: contracts.BlobSHA256(p)}); code(err) != contracts.CodeNotFound {
		t.Fatalf("commit of an expired upload: %v, want not_found", err)
	}
}

// Uploads do not survive a restart; blobs do.
func TestRestart(t *testing.T) {
	e := newEnv(t, "inproc", blob.Options{ChunkSize: testChunk})
	ctx := ctxT(t)
	data := randBytes(9, 2*testChunk+1)
	if _, err := blobclient.Put(ctx, e.client, "kept", "", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	up, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "lost"})
	if err != nil {
		t.Fatal(err)
	}
	e.stop()
	if names := entries(t, e.staging()); len(names) != 0 {
		t.Fatalf("staging files left by Stop: %v", names)
	}
	e.start(t)
	p := []byte("x")
	if _, err := rpc.Call[contracts.Received](ctx, e.client, contracts.PutChunk{UploadID: up.UploadID, Data: p, SHA256: contracts.BlobSHA256(p)}); code(err) != contracts.CodeNotFound {
		t.Fatalf("chunk after restart: %v, want not_found", err)
	}
	var got bytes.Buffer
	if _, err := blobclient.Get(ctx, e.client, "kept", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("blob after restart: %d bytes, %v", got.Len(), err)
	}
}

// MaxUploads bounds the uploads open at once.
func TestMaxUploads(t *testing.T) {
	e := newEnv(t, "inproc", blob.Options{ChunkSize: testChunk, MaxUploads: 2})
	ctx := ctxT(t)
	var ids []contracts.ID
	for range 2 {
		up, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "u"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, up.UploadID)
	}
	if _, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "u"}); code(err) != contracts.CodeUnavailable {
		t.Fatalf("third upload: %v, want unavailable", err)
	}
	if _, err := rpc.Call[contracts.OK](ctx, e.client, contracts.PutAbort{UploadID: ids[0]}); err != nil {
		t.Fatal(err)
	}
	// A committed upload frees its place too.
	if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, contracts.PutCommit{UploadID: ids[1], SHA256: contracts.BlobSHA256(nil)}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "u"}); err != nil {
			t.Fatalf("upload after others ended: %v", err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	open := func(context.Context, string) (blobstore.Backend, error) { return st, nil }
	for what, o := range map[string]blob.Options{
		"no backend":     {},
		"both":           {Backend: st, Open: open},
		"chunk too big":  {Backend: st, ChunkSize: contracts.MaxBlobChunk + 1},
		"negative ttl":   {Backend: st, UploadTTL: -time.Second},
		"negative count": {Backend: st, MaxUploads: -1},
	} {
		if err := o.Validate(); !errors.Is(err, blob.ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", what, err)
		}
	}
	if err := (blob.Options{Backend: st}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
