package fsstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/blobstoretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, dir
}

func TestConformance(t *testing.T) {
	blobstoretest.Run(t, func(t *testing.T) blobstoretest.Subject {
		s, _ := newStore(t)
		return blobstoretest.Subject{
			Backend:   s,
			Corrupt:   func(key string) error { return corrupt(s, key) },
			Leftovers: func() ([]string, error) { return leftovers(s) },
		}
	})
}

// corrupt flips the first content byte of key's file, keeping its
// metadata.
func corrupt(s *Store, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b[:], 0)
	return err
}

func leftovers(s *Store) ([]string, error) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// TestNewRemovesStaleTempFiles: what a crash left in tmp is removed, and
// the blobs survive.
func TestNewRemovesStaleTempFiles(t *testing.T) {
	s, dir := newStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "keep/me", strings.NewReader("kept"), blobstore.PutOptions{Size: 4}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"put-123", "put-456"} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", name), []byte("half a blob"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := New(dir)
	if err != nil {
		t.Fatalf("New over a crashed store: %v", err)
	}
	if left, _ := leftovers(s2); len(left) != 0 {
		t.Fatalf("temporary files left after New: %q", left)
	}
	rc, info, err := s2.Get(ctx, "keep/me", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "kept" || info.Size != 4 {
		t.Fatalf("blob after reopening: %q, %+v, %v", data, info, err)
	}
}

// TestKeysStayInside: every file a Put makes is under DIR/objects, and
// the layout is the documented one.
func TestKeysStayInside(t *testing.T) {
	s, dir := newStore(t)
	ctx := context.Background()
	long := strings.Repeat("L", 250)
	for _, key := range []string{"a", "a/b", "..x/y..", long + "/z", "w/" + long} {
		if _, err := s.Put(ctx, key, strings.NewReader(key), blobstore.PutOptions{Size: int64(len(key))}); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(dir, "objects"), p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"f_a": true, "d_a/f_b": true, "d_..x/f_y..": true,
		"D_" + hexSHA(long) + "/f_z": true, "d_w/F_" + hexSHA(long): true,
	}
	if len(files) != len(want) {
		t.Fatalf("files %q; want %d", files, len(want))
	}
	for _, f := range files {
		if !want[f] {
			t.Fatalf("unexpected file %q (all: %q)", f, files)
		}
	}
}

func hexSHA(s string) string {
	return encodeSegment(s, true)[2:]
}

// TestCorruptMetadata: a blob file whose trailer is damaged is reported as
// ErrChecksum, not read as a blob.
func TestCorruptMetadata(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "m", strings.NewReader("content"), blobstore.PutOptions{Size: 7}); err != nil {
		t.Fatal(err)
	}
	p, _ := s.path("m")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string][]byte{
		"truncated":      raw[:len(raw)-3],
		"no magic":       append(bytes.Clone(raw[:len(raw)-8]), "XXXXXXXX"...),
		"content grew":   append([]byte("x"), raw...),
		"empty file":     {},
		"other key":      bytes.Replace(raw, []byte(`"key":"m"`), []byte(`"key":"n"`), 1),
		"garbage length": append(append(bytes.Clone(raw[:len(raw)-16]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), magic...),
	} {
		if err := os.WriteFile(p, damage, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "m"); !errors.Is(err, blobstore.ErrChecksum) {
			t.Fatalf("%s: Stat: %v; want ErrChecksum", name, err)
		}
		if _, _, err := s.Get(ctx, "m", 0, -1); !errors.Is(err, blobstore.ErrChecksum) {
			t.Fatalf("%s: Get: %v; want ErrChecksum", name, err)
		}
	}
}

// TestDeleteRemovesEmptyDirectories: nothing of a deleted key's path is
// left when it was the last blob there.
func TestDeleteRemovesEmptyDirectories(t *testing.T) {
	s, dir := newStore(t)
	ctx := context.Background()
	for _, key := range []string{"p/q/r/s", "p/keep"} {
		if _, err := s.Put(ctx, key, strings.NewReader("x"), blobstore.PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "p/q/r/s"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "d_p", "d_q")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("d_p/d_q still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "d_p", "f_keep")); err != nil {
		t.Fatalf("the other blob's file: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(""); err == nil {
		t.Fatal("New(\"\"): no error")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(file); err == nil {
		t.Fatal("New(a file): no error")
	}
}

// TestPeakHeap256MiB measures the heap a Put and a Get of 256 MiB take:
// content streams through fixed buffers.
func TestPeakHeap256MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 256 MiB measurement")
	}
	const size = 256 << 20
	s, _ := newStore(t)
	ctx := context.Background()
	digest := blobstoretest.PatternSHA256(1, size)
	var err error
	put := blobstoretest.PeakHeap(func() {
		_, err = s.Put(ctx, "big", blobstoretest.NewPatternReader(1, size), blobstore.PutOptions{Size: size, SHA256: digest})
	})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	var n int64
	get := blobstoretest.PeakHeap(func() {
		var rc io.ReadCloser
		if rc, _, err = s.Get(ctx, "big", 0, -1); err == nil {
			n, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
	if err != nil || n != size {
		t.Fatalf("Get: %d bytes, %v", n, err)
	}
	t.Logf("fsstore, 256 MiB: peak heap above baseline: Put %.1f MiB, Get %.1f MiB", float64(put)/(1<<20), float64(get)/(1<<20))
	if put > 16<<20 || get > 16<<20 {
		t.Fatalf("peak heap Put %d, Get %d bytes; want under 16 MiB", put, get)
	}
}
