package blobstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/zeroci/zeroci/modules/blob/blobstore"
)

// largeSize is the size of the suite's large blobs: a few MiB, not a
// multiple of a power of two, so the last part of a multipart upload is
// short.
const largeSize = 3<<20 + 12345

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// plainReader hides every method of its reader but Read (bytes.Reader's
// Seek and WriteTo), so a backend sees a stream of unknown length.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

func stream(b []byte) io.Reader { return plainReader{bytes.NewReader(b)} }

// describe prints an error with its sentinels, for failure messages.
func describe(err error) string {
	if err == nil {
		return "no error"
	}
	return fmt.Sprintf("error %q", err)
}

// mustPut stores content under key with its size and content type and
// checks the returned Info.
func mustPut(t *testing.T, b blobstore.Backend, key string, content []byte, contentType string) blobstore.Info {
	t.Helper()
	info, err := b.Put(ctxFor(t), key, stream(content), blobstore.PutOptions{ContentType: contentType, Size: int64(len(content))})
	if err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(content), err)
	}
	checkInfo(t, "Put", info, key, content, contentType)
	return info
}

// checkInfo checks an Info against the content it describes.
func checkInfo(t *testing.T, what string, info blobstore.Info, key string, content []byte, contentType string) {
	t.Helper()
	if contentType == "" {
		contentType = blobstore.DefaultContentType
	}
	if info.Key != key || info.Size != int64(len(content)) || info.SHA256 != sha(content) || info.ContentType != contentType {
		t.Fatalf("%s(%q): Info %+v; want key %q, size %d, sha256 %s, content type %q",
			what, key, info, key, len(content), sha(content), contentType)
	}
	if info.ModTime.IsZero() {
		t.Fatalf("%s(%q): Info has no ModTime", what, key)
	}
}

// sameInfo fails unless two Infos describe the same stored blob.
func sameInfo(t *testing.T, what string, got, want blobstore.Info) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.SHA256 != want.SHA256 ||
		got.ContentType != want.ContentType || !got.ModTime.Equal(want.ModTime) {
		t.Fatalf("%s: Info %+v; want %+v", what, got, want)
	}
}

// read reads a range of key, returning its bytes, the Info Get returned,
// and the first error of Get, Read or Close.
func read(t *testing.T, b blobstore.Backend, key string, off, length int64) ([]byte, blobstore.Info, error) {
	t.Helper()
	rc, info, err := b.Get(ctxFor(t), key, off, length)
	if err != nil {
		return nil, info, err
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return data, info, err
}

// mustRead reads all of key and checks it holds content.
func mustRead(t *testing.T, b blobstore.Backend, key string, content []byte) blobstore.Info {
	t.Helper()
	data, info, err := read(t, b, key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q, 0, -1): %v", key, err)
	}
	if !bytes.Equal(data, content) {
		t.Fatalf("Get(%q, 0, -1): %d bytes (sha256 %s); want %d bytes (sha256 %s)", key, len(data), sha(data), len(content), sha(content))
	}
	return info
}

func mustStat(t *testing.T, b blobstore.Backend, key string) blobstore.Info {
	t.Helper()
	info, err := b.Stat(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	return info
}

// mustBeAbsent checks that key is not stored: Stat and Get say
// ErrNotFound, List does not show it.
func mustBeAbsent(t *testing.T, b blobstore.Backend, key string) {
	t.Helper()
	if info, err := b.Stat(ctxFor(t), key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat(%q): %+v, %s; want ErrNotFound", key, info, describe(err))
	}
	if _, _, err := read(t, b, key, 0, -1); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Get(%q): %s; want ErrNotFound", key, describe(err))
	}
	infos, _, err := b.List(ctxFor(t), key, "", 0)
	if err != nil {
		t.Fatalf("List(%q): %v", key, err)
	}
	for _, info := range infos {
		if info.Key == key {
			t.Fatalf("List(%q) shows %q, which should not exist", key, key)
		}
	}
}

// checkNoLeftovers fails if a failed Put left staging state behind.
func checkNoLeftovers(t *testing.T, s Subject, after string) {
	t.Helper()
	if s.Leftovers == nil {
		return
	}
	left, err := s.Leftovers()
	if err != nil {
		t.Fatalf("Leftovers: %v", err)
	}
	if len(left) > 0 {
		t.Fatalf("after %s: staging state left behind: %q", after, left)
	}
}

// listAll pages through a listing with the given limit.
func listAll(t *testing.T, b blobstore.Backend, prefix string, limit int) []blobstore.Info {
	t.Helper()
	var all []blobstore.Info
	token := ""
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatalf("List(%q, limit %d): more than 10000 pages", prefix, limit)
		}
		infos, next, err := b.List(ctxFor(t), prefix, token, limit)
		if err != nil {
			t.Fatalf("List(%q, %q, %d): %v", prefix, token, limit, err)
		}
		if len(infos) > blobstore.ListLimit(limit) {
			t.Fatalf("List(%q, %q, %d): %d blobs, more than the limit", prefix, token, limit, len(infos))
		}
		all = append(all, infos...)
		if next == "" {
			return all
		}
		if len(infos) == 0 {
			t.Fatalf("List(%q, %q, %d): an empty page with next token %q", prefix, token, limit, next)
		}
		token = next
	}
}

// errAfterReader yields content, calling hook once after the first `at`
// bytes; if hook returns an error, reading fails with it from then on.
type errAfterReader struct {
	content []byte
	at      int
	hook    func() error
	off     int
	fired   bool
	err     error
}

func (r *errAfterReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.fired && r.off >= r.at {
		r.fired = true
		if err := r.hook(); err != nil {
			r.err = err
			return 0, err
		}
	}
	if r.off >= len(r.content) {
		return 0, io.EOF
	}
	end := len(r.content)
	if !r.fired && r.at < end {
		end = r.at // stop at the hook, so it fires at exactly `at`
	}
	if end-r.off > len(p) {
		end = r.off + len(p)
	}
	n := copy(p, r.content[r.off:end])
	r.off += n
	return n, nil
}

// cancelAfter returns a reader of content that cancels the returned
// context once it has yielded `at` bytes, and goes on yielding.
func cancelAfter(t *testing.T, content []byte, at int) (io.Reader, context.Context) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	t.Cleanup(cancel)
	return &errAfterReader{content: content, at: at, hook: func() error { cancel(); return nil }}, ctx
}
