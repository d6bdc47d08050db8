package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// faulty wraps a real backend and fails the next call of an operation
// with the error set for it.
type faulty struct {
	blobstore.Backend
	mu   sync.Mutex
	next map[string]error
}

func (f *faulty) failNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[op] = err
}

func (f *faulty) fault(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.next[op]
	delete(f.next, op)
	return err
}

func (f *faulty) Put(ctx context.Context, key string, r io.Reader, o blobstore.PutOptions) (blobstore.Info, error) {
	if err := f.fault("put"); err != nil {
		return blobstore.Info{}, err
	}
	return f.Backend.Put(ctx, key, r, o)
}

func (f *faulty) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, blobstore.Info, error) {
	if err := f.fault("get"); err != nil {
		return nil, blobstore.Info{}, err
	}
	return f.Backend.Get(ctx, key, off, n)
}

func (f *faulty) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	if err := f.fault("stat"); err != nil {
		return blobstore.Info{}, err
	}
	return f.Backend.Stat(ctx, key)
}

func (f *faulty) List(ctx context.Context, prefix, token string, limit int) ([]blobstore.Info, string, error) {
	if err := f.fault("list"); err != nil {
		return nil, "", err
	}
	return f.Backend.List(ctx, prefix, token, limit)
}

func (f *faulty) Delete(ctx context.Context, key string) error {
	if err := f.fault("delete"); err != nil {
		return err
	}
	return f.Backend.Delete(ctx, key)
}

// closeCounter is a backend that counts Close calls.
type closeCounter struct {
	blobstore.Backend
	mu     sync.Mutex
	closed int
}

func (c *closeCounter) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed++
	return nil
}

// Backend errors reach callers with the codes the package doc promises.
func TestBackendErrors(t *testing.T) {
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &faulty{Backend: st, next: map[string]error{}}
	e := newEnv(t, "inproc", blob.Options{Backend: f, ChunkSize: testChunk})
	ctx := ctxT(t)
	data := randBytes(4, 3*testChunk)
	if _, err := blobclient.Put(ctx, e.client, "e/k", "", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	wrap := func(sentinel error) error { return fmt.Errorf("%w: the service said no", sentinel) }
	for _, c := range []struct {
		op   string
		err  error
		call func() error
		want contracts.Code
		msg  string
	}{
		{"stat", wrap(blobstore.ErrNotFound), func() error { _, err := blobclient.Stat(ctx, e.client, "e/k"); return err }, contracts.CodeNotFound, ""},
		{"stat", wrap(blobstore.ErrUnavailable), func() error { _, err := blobclient.Stat(ctx, e.client, "e/k"); return err }, contracts.CodeUnavailable, "the service said no"},
		{"stat", wrap(blobstore.ErrDenied), func() error { _, err := blobclient.Stat(ctx, e.client, "e/k"); return err }, contracts.CodeInternal, "credentials"},
		{"stat", errors.New("disk on fire"), func() error { _, err := blobclient.Stat(ctx, e.client, "e/k"); return err }, contracts.CodeInternal, "disk on fire"},
		{"get", wrap(blobstore.ErrChecksum), func() error { return blobclient.GetRange(ctx, e.client, "e/k", 0, 10, io.Discard) }, contracts.CodeInternal, "corrupt"},
		{"get", wrap(blobstore.ErrRange), func() error { return blobclient.GetRange(ctx, e.client, "e/k", 0, 10, io.Discard) }, contracts.CodeInvalidArgument, ""},
		{"get", wrap(blobstore.ErrInvalidKey), func() error { return blobclient.GetRange(ctx, e.client, "e/k", 0, 10, io.Discard) }, contracts.CodeInvalidArgument, ""},
		{"list", wrap(blobstore.ErrUnavailable), func() error { _, err := blobclient.List(ctx, e.client, "e/", "", 0); return err }, contracts.CodeUnavailable, ""},
		{"delete", wrap(blobstore.ErrDenied), func() error { return blobclient.Delete(ctx, e.client, "e/k") }, contracts.CodeInternal, "credentials"},
		{"put", wrap(blobstore.ErrChecksum), func() error {
			_, err := blobclient.Put(ctx, e.client, "e/k", "", bytes.NewReader(data[:10]))
			return err
		}, contracts.CodeConflict, ""},
	} {
		f.failNext(c.op, c.err)
		err := c.call()
		if code(err) != c.want || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s failing with %v: %v, want %s mentioning %q", c.op, c.err, err, c.want, c.msg)
		}
	}
	// The blob survived every failure.
	var got bytes.Buffer
	if _, err := blobclient.Get(ctx, e.client, "e/k", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("get after failures: %d bytes, %v", got.Len(), err)
	}

	// A commit that fails for a transient reason can be retried; one whose
	// staged file does not match drops the upload.
	up, err := rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "e/retry"})
	if err != nil {
		t.Fatal(err)
	}
	p := data[:100]
	if _, err := rpc.Call[contracts.Received](ctx, e.client, contracts.PutChunk{UploadID: up.UploadID, Data: p, SHA256: contracts.BlobSHA256(p)}); err != nil {
		t.Fatal(err)
	}
	commit := contracts.PutCommit{UploadID: up.UploadID, Size: 100, SHA256: contracts.BlobSHA256(p)}
	f.failNext("put", wrap(blobstore.ErrUnavailable))
	if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, commit); code(err) != contracts.CodeUnavailable {
		t.Fatalf("commit on an unavailable store: %v, want unavailable", err)
	}
	if info, err := rpc.Call[contracts.BlobInfo](ctx, e.client, commit); err != nil || info.Size != 100 {
		t.Fatalf("commit retried: %+v %v", info, err)
	}
	up, err = rpc.Call[contracts.Upload](ctx, e.client, contracts.PutBegin{Key: "e/corrupt"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.Call[contracts.Received](ctx, e.client, contracts.PutChunk{UploadID: up.UploadID, Data: p, SHA256: contracts.BlobSHA256(p)}); err != nil {
		t.Fatal(err)
	}
	commit.UploadID = up.UploadID
	f.failNext("put", wrap(blobstore.ErrChecksum))
	if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, commit); code(err) != contracts.CodeConflict {
		t.Fatalf("commit refused by the store: %v, want conflict", err)
	}
	if _, err := rpc.Call[contracts.BlobInfo](ctx, e.client, commit); code(err) != contracts.CodeNotFound {
		t.Fatalf("commit after the store refused it: %v, want not_found", err)
	}
	if names := entries(t, e.staging()); len(names) != 0 {
		t.Fatalf("staging files left: %v", names)
	}
}

// A backend the module opened is closed by Stop, once.
func TestOpenedBackendClosed(t *testing.T) {
	var cc *closeCounter
	e := newEnv(t, "inproc", blob.Options{Open: func(ctx context.Context, dataDir string) (blobstore.Backend, error) {
		st, err := fsstore.New(dataDir + "/blob/store")
		if err != nil {
			return nil, err
		}
		cc = &closeCounter{Backend: st}
		return cc, nil
	}})
	ctx := ctxT(t)
	if _, err := blobclient.Put(ctx, e.client, "o", "", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	e.stop()
	e.stop()
	if cc.closed != 1 {
		t.Fatalf("backend closed %d times, want 1", cc.closed)
	}
}

// replaceOnWrite replaces (or deletes) the blob after the first write.
type replaceOnWrite struct {
	do     func()
	writes int
}

func (r *replaceOnWrite) Write(p []byte) (int, error) {
	r.writes++
	if r.writes == 1 {
		r.do()
	}
	return len(p), nil
}

// A reader notices a blob replaced or deleted between two chunks.
func TestClientNoticesChange(t *testing.T) {
	e := newEnv(t, "inproc", blob.Options{ChunkSize: testChunk})
	ctx := ctxT(t)
	tr := blobclient.Transfer{Window: 1, ReadChunk: testChunk}
	put := func(seed uint64) {
		if _, err := blobclient.Put(ctx, e.client, "ch", "", bytes.NewReader(randBytes(seed, 4*testChunk))); err != nil {
			t.Error(err)
		}
	}
	put(1)
	_, err := tr.Get(ctx, e.client, "ch", &replaceOnWrite{do: func() { put(2) }})
	if !errors.Is(err, blobclient.ErrChanged) {
		t.Fatalf("get while replaced: %v, want ErrChanged", err)
	}
	err = tr.GetRange(ctx, e.client, "ch", 5, 3*testChunk, &replaceOnWrite{do: func() { put(3) }})
	if !errors.Is(err, blobclient.ErrChanged) {
		t.Fatalf("range while replaced: %v, want ErrChanged", err)
	}
	_, err = tr.Get(ctx, e.client, "ch", &replaceOnWrite{do: func() {
		if err := blobclient.Delete(ctx, e.client, "ch"); err != nil {
			t.Error(err)
		}
	}})
	if !errors.Is(err, blobclient.ErrChanged) {
		t.Fatalf("get while deleted: %v, want ErrChanged", err)
	}
}

// A failing writer stops Get.
func TestClientWriterFails(t *testing.T) {
	e := newEnv(t, "inproc", blob.Options{ChunkSize: testChunk})
	ctx := ctxT(t)
	if _, err := blobclient.Put(ctx, e.client, "w", "", bytes.NewReader(randBytes(1, 10*testChunk))); err != nil {
		t.Fatal(err)
	}
	full := errors.New("disk full")
	_, err := blobclient.Transfer{ReadChunk: testChunk}.Get(ctx, e.client, "w", &errWriter{err: full, after: 2})
	if !errors.Is(err, full) {
		t.Fatalf("get to a failing writer: %v, want %v", err, full)
	}
}

type errWriter struct {
	err   error
	after int
}

func (w *errWriter) Write(p []byte) (int, error) {
	if w.after == 0 {
		return 0, w.err
	}
	w.after--
	return len(p), nil
}

// Bytes corrupted at rest are noticed: by the backend on a read of a
// whole blob (internal), by the client on a blob read in chunks
// (ErrChecksum).
func TestCorruptionNoticed(t *testing.T) {
	e := newEnv(t, "inproc", blob.Options{ChunkSize: testChunk})
	ctx := ctxT(t)
	corrupt := func(key string, at int64) {
		t.Helper()
		path := filepath.Join(e.dir, "store", "objects", "f_"+key)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var b [1]byte
		if _, err := f.ReadAt(b[:], at); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b[:], at); err != nil {
			t.Fatal(err)
		}
	}
	for key, n := range map[string]int{"small": 100, "large": 3 * testChunk} {
		if _, err := blobclient.Put(ctx, e.client, key, "", bytes.NewReader(randBytes(5, n))); err != nil {
			t.Fatal(err)
		}
		corrupt(key, int64(n/2))
	}
	tr := blobclient.Transfer{ReadChunk: testChunk}
	if _, err := tr.Get(ctx, e.client, "small", io.Discard); code(err) != contracts.CodeInternal || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("get of a corrupt small blob: %v, want internal, corrupt", err)
	}
	if _, err := tr.Get(ctx, e.client, "large", io.Discard); !errors.Is(err, blobclient.ErrChecksum) {
		t.Fatalf("get of a corrupt large blob: %v, want ErrChecksum", err)
	}
}

// A client whose chunks overtake each other by more than the module waits
// for resends them once the ones before are stored.
func TestClientResendsEarlyChunks(t *testing.T) {
	opts := blob.Options{ChunkSize: testChunk, ReorderWindow: 1, ReorderWait: time.Millisecond}
	eachTransport(t, opts, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		data := randBytes(11, 40*testChunk+17)
		info, err := blobclient.Transfer{Window: 8}.Put(ctx, e.client, "early", "", bytes.NewReader(data))
		if err != nil || info.SHA256 != sha(data) {
			t.Fatalf("put: %+v %v", info, err)
		}
		var got bytes.Buffer
		if _, err := blobclient.Get(ctx, e.client, "early", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("get: %d bytes, %v", got.Len(), err)
		}
	})
}
