// Package fsstore is the blobstore.Backend on local files, the embedded
// default: every blob is one file under DIR/objects.
//
// # Layout
//
// A blob's file holds its content followed by its metadata (key, size,
// SHA-256, content type, modification time as JSON), the metadata's length
// (8 bytes, big-endian) and a magic string (8 bytes). Content and metadata
// live and die together: no state exists in which one is visible without
// the other.
//
// The key's segments become path components with a prefix that says
// whether the component is a directory ("d_") or a blob ("f_"), so the
// keys "a" and "a/b" can both exist (DIR/objects/f_a and
// DIR/objects/d_a/f_b). A segment longer than 200 bytes, which a file
// system may refuse as a name, is stored as the SHA-256 of the segment
// ("D_"/"F_" and 64 hex digits); the key in the metadata is what counts.
// Segments are checked by blobstore.CheckKey and the resulting path again
// against DIR/objects, so no key reaches outside it.
//
// # Put
//
//  1. The content is copied to a new file in DIR/tmp while its SHA-256 and
//     length are computed; the context is checked between reads.
//  2. Size and expected digest are checked: on a mismatch, a cancelled
//     context or a reader error, the temporary file is removed and nothing
//     else has changed.
//  3. The metadata trailer is appended and the file fsynced.
//  4. The parent directories are created (each new one fsynced into its
//     parent), the file is renamed over the blob's path, and the parent
//     directory fsynced. The rename is the commit point: readers see the
//     old blob or the new one, whole, and concurrent Puts of one key end
//     with one of them.
//
// A crash before the rename leaves only a file in DIR/tmp, which New
// removes. After the rename, the fsyncs make the blob durable.
//
// Delete removes the file, fsyncs its directory, and removes directories
// it left empty. Directory creation in Put and removal in Delete are
// serialized by a lock, so a Put never renames into a directory that a
// Delete is removing. Reads need no lock: an open file stays readable
// when it is replaced or removed.
//
// One directory belongs to one Store at a time: New removes every
// temporary file, including those of another Store's Puts in progress.
package fsstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeroci/zeroci/internal/fsutil"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
)

const (
	// magic ends every blob file.
	magic = "ZCIBLOB1"
	// trailerLen is the metadata length field and the magic.
	trailerLen = 16
	// maxMetaLen bounds the metadata JSON (a key is at most 1 KiB).
	maxMetaLen = 16 << 10
	// maxPlainSegment is the longest segment stored under its own name.
	maxPlainSegment = 200
)

// Store keeps blobs as files under one directory. Safe for concurrent use.
type Store struct {
	objects string // DIR/objects
	tmp     string // DIR/tmp
	// tree serializes directory changes: Put creates directories and
	// renames into them holding it shared, Delete removes empty
	// directories holding it exclusively.
	tree sync.RWMutex
}

var _ blobstore.Backend = (*Store)(nil)

// meta is the metadata stored after a blob's content.
type meta struct {
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	ModTime     time.Time `json:"mod_time"`
}

func (m meta) info() blobstore.Info {
	return blobstore.Info{Key: m.Key, Size: m.Size, SHA256: m.SHA256, ContentType: m.ContentType, ModTime: m.ModTime}
}

// New opens the store in dir, creating it if needed, and removes the
// temporary files of Puts that a crash interrupted.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fsstore: new: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fsstore: new: %w", err)
	}
	s := &Store{objects: filepath.Join(abs, "objects"), tmp: filepath.Join(abs, "tmp")}
	for _, d := range []string{s.objects, s.tmp} {
		if err := mkdirAll(d); err != nil {
			return nil, fmt.Errorf("fsstore: new: %w", err)
		}
	}
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, fmt.Errorf("fsstore: new: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return nil, fmt.Errorf("fsstore: new: remove stale temporary file: %w", err)
		}
	}
	if len(entries) > 0 {
		if err := fsutil.SyncDir(s.tmp); err != nil {
			return nil, fmt.Errorf("fsstore: new: %w", err)
		}
	}
	return s, nil
}

// path is where key's file is, after checking the key.
func (s *Store) path(key string) (string, error) {
	if err := blobstore.CheckKey(key); err != nil {
		return "", err
	}
	segs := strings.Split(key, "/")
	parts := make([]string, 0, len(segs)+1)
	parts = append(parts, s.objects)
	for i, seg := range segs {
		parts = append(parts, encodeSegment(seg, i == len(segs)-1))
	}
	p := filepath.Join(parts...)
	if rel, err := filepath.Rel(s.objects, p); err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%w: %q maps outside the store", blobstore.ErrInvalidKey, key)
	}
	return p, nil
}

// encodeSegment names a key segment on disk.
func encodeSegment(seg string, file bool) string {
	plain, hashed := "d_", "D_"
	if file {
		plain, hashed = "f_", "F_"
	}
	if len(seg) > maxPlainSegment {
		sum := sha256.Sum256([]byte(seg))
		return hashed + hex.EncodeToString(sum[:])
	}
	return plain + seg
}

// Put implements blobstore.Backend.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts blobstore.PutOptions) (blobstore.Info, error) {
	final, err := s.path(key)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put: %w", err)
	}
	if opts, err = opts.Normalize(); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	h := sha256.New()
	n, err := blobstore.CopyContext(ctx, io.MultiWriter(f, h), r)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	m := meta{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), ContentType: opts.ContentType}
	if opts.Size >= 0 && n != opts.Size {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w: content has %d bytes, Size says %d (use -1 when unknown)", key, blobstore.ErrChecksum, n, opts.Size)
	}
	if opts.SHA256 != "" && m.SHA256 != opts.SHA256 {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w: content has SHA-256 %s, expected %s", key, blobstore.ErrChecksum, m.SHA256, opts.SHA256)
	}
	m.ModTime = time.Now().UTC().Round(0)
	if err := writeTrailer(f, m); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	if err := s.commit(tmp, final); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	committed = true
	return m.info(), nil
}

// commit renames the finished temporary file to its blob's path.
func (s *Store) commit(tmp, final string) error {
	s.tree.RLock()
	defer s.tree.RUnlock()
	dir := filepath.Dir(final)
	if err := mkdirAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}

func writeTrailer(f *os.File, m meta) error {
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var trailer [trailerLen]byte
	binary.BigEndian.PutUint64(trailer[:8], uint64(len(js)))
	copy(trailer[8:], magic)
	if _, err := f.Write(append(js, trailer[:]...)); err != nil {
		return err
	}
	return nil
}

// readMeta reads the metadata of an open blob file and checks it belongs
// to key (when key is not empty).
func readMeta(f *os.File, key string) (meta, error) {
	fi, err := f.Stat()
	if err != nil {
		return meta{}, err
	}
	size := fi.Size()
	corrupt := func(why string) (meta, error) {
		return meta{}, fmt.Errorf("%w: corrupt blob file %s: %s", blobstore.ErrChecksum, f.Name(), why)
	}
	if size < trailerLen {
		return corrupt("too short")
	}
	var trailer [trailerLen]byte
	if _, err := f.ReadAt(trailer[:], size-trailerLen); err != nil {
		return meta{}, err
	}
	if string(trailer[8:]) != magic {
		return corrupt("no magic")
	}
	ml := binary.BigEndian.Uint64(trailer[:8])
	if ml > maxMetaLen || int64(ml) > size-trailerLen {
		return corrupt("bad metadata length")
	}
	js := make([]byte, ml)
	if _, err := f.ReadAt(js, size-trailerLen-int64(ml)); err != nil {
		return meta{}, err
	}
	var m meta
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return corrupt("metadata: " + err.Error())
	}
	if m.Size != size-trailerLen-int64(ml) {
		return corrupt(fmt.Sprintf("metadata says %d bytes of content, file holds %d", m.Size, size-trailerLen-int64(ml)))
	}
	if key != "" && m.Key != key {
		return corrupt(fmt.Sprintf("holds key %q", m.Key))
	}
	return m, nil
}

// open opens key's file and reads its metadata.
func (s *Store) open(key string) (*os.File, meta, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, meta{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, meta{}, fmt.Errorf("%w: %q", blobstore.ErrNotFound, key)
	}
	if err != nil {
		return nil, meta{}, err
	}
	m, err := readMeta(f, key)
	if err != nil {
		f.Close()
		return nil, meta{}, err
	}
	return f, m, nil
}

// Get implements blobstore.Backend. The reader is not tied to ctx: reads
// of local files do not block for long.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, blobstore.Info, error) {
	if err := blobstore.CheckKey(key); err != nil {
		return nil, blobstore.Info{}, fmt.Errorf("fsstore: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, blobstore.Info{}, fmt.Errorf("fsstore: get %q: %w", key, err)
	}
	if off < 0 {
		return nil, blobstore.Info{}, fmt.Errorf("fsstore: get %q: %w: negative offset %d", key, blobstore.ErrRange, off)
	}
	f, m, err := s.open(key)
	if err != nil {
		return nil, blobstore.Info{}, fmt.Errorf("fsstore: get %q: %w", key, err)
	}
	if off > m.Size {
		f.Close()
		return nil, blobstore.Info{}, fmt.Errorf("fsstore: get %q: %w: offset %d, size %d", key, blobstore.ErrRange, off, m.Size)
	}
	n := m.Size - off
	if length >= 0 && length < n {
		n = length
	}
	var rc io.ReadCloser = &fileSection{SectionReader: io.NewSectionReader(f, off, n), f: f}
	if off == 0 && n == m.Size {
		rc = blobstore.VerifyReader(rc, key, m.Size, m.SHA256)
	}
	return rc, m.info(), nil
}

// fileSection reads part of a file and closes it.
type fileSection struct {
	*io.SectionReader
	f *os.File
}

func (r *fileSection) Close() error { return r.f.Close() }

// Stat implements blobstore.Backend.
func (s *Store) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	if err := blobstore.CheckKey(key); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: stat %q: %w", key, err)
	}
	f, m, err := s.open(key)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("fsstore: stat %q: %w", key, err)
	}
	f.Close()
	return m.info(), nil
}

// Delete implements blobstore.Backend.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("fsstore: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fsstore: delete %q: %w", key, err)
	}
	s.tree.Lock()
	defer s.tree.Unlock()
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("fsstore: delete %q: %w", key, err)
	}
	dir := filepath.Dir(p)
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("fsstore: delete %q: %w", key, err)
	}
	// Remove the directories the blob leaves empty. ENOTEMPTY (or any
	// other error) ends the climb: an empty directory left behind costs
	// nothing but a little space.
	for dir != s.objects {
		if os.Remove(dir) != nil {
			break
		}
		dir = filepath.Dir(dir)
		if err := fsutil.SyncDir(dir); err != nil {
			return fmt.Errorf("fsstore: delete %q: %w", key, err)
		}
	}
	return nil
}

// List implements blobstore.Backend. It walks the directory of the
// prefix's complete segments and sorts what it finds, so a page costs
// time in proportion to the blobs under that directory, not to the page.
func (s *Store) List(ctx context.Context, prefix, pageToken string, limit int) ([]blobstore.Info, string, error) {
	if err := blobstore.CheckPrefix(prefix); err != nil {
		return nil, "", fmt.Errorf("fsstore: list: %w", err)
	}
	if pageToken != "" {
		if err := blobstore.CheckKey(pageToken); err != nil {
			return nil, "", fmt.Errorf("fsstore: list %q: %w: page token %q", prefix, blobstore.ErrInvalidArgument, pageToken)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("fsstore: list %q: %w", prefix, err)
	}
	limit = blobstore.ListLimit(limit)

	// The directory every match lies under: that of the complete segments.
	root := s.objects
	var rootKey string // key prefix of root, "" or ending in "/"
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		rootKey = prefix[:i+1]
		for _, seg := range strings.Split(prefix[:i], "/") {
			root = filepath.Join(root, encodeSegment(seg, false))
		}
	}

	var keys []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // root absent, or removed by a Delete meanwhile
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		key, known := decodePath(rootKey, rel)
		if d.IsDir() {
			// Skip directories that cannot hold a match.
			if known && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !known {
			// A hashed segment: the key is in the metadata.
			f, err := os.Open(p)
			if err != nil {
				return nil // deleted meanwhile
			}
			m, err := readMeta(f, "")
			f.Close()
			if err != nil {
				return err
			}
			key = m.Key
		}
		if strings.HasPrefix(key, prefix) && key > pageToken {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("fsstore: list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	var next string
	if len(keys) > limit {
		keys = keys[:limit]
		next = keys[limit-1]
	}
	infos := make([]blobstore.Info, 0, len(keys))
	for _, key := range keys {
		f, m, err := s.open(key)
		if errors.Is(err, blobstore.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, "", fmt.Errorf("fsstore: list %q: %w", prefix, err)
		}
		f.Close()
		infos = append(infos, m.info())
	}
	return infos, next, nil
}

// decodePath turns a path relative to the directory of key prefix
// rootKey into a key (for a directory: its key prefix without the "/").
// known is false if a component is hashed or not of this store.
func decodePath(rootKey, rel string) (key string, known bool) {
	comps := strings.Split(filepath.ToSlash(rel), "/")
	var b strings.Builder
	b.WriteString(rootKey)
	for i, c := range comps {
		if len(c) < 2 || (c[:2] != "d_" && c[:2] != "f_") {
			return "", false
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(c[2:])
	}
	return b.String(), true
}

// mkdirAll creates dir and its missing parents, fsyncing each new
// directory into its parent.
func mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // made by a concurrent Put
		}
		return err
	}
	return fsutil.SyncDir(parent)
}
