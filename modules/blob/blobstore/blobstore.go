// Package blobstore is where the blob module keeps blobs: the Backend
// interface, with package fsstore (files under the data directory, the
// embedded default) and package ocistore (OCI Object Storage) as
// implementations, and package blobstoretest as the conformance suite
// both run.
//
// A backend stores whole objects: a Put becomes visible only when it is
// complete and its checksum matches (a crashed or cancelled Put leaves
// nothing behind), and concurrent Puts to one key end with one of them
// complete, never a mix. The blob module stages chunked uploads itself
// and hands a backend the finished content.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// MaxKeyLen bounds a key.
	MaxKeyLen = 1024
	// MaxListLimit bounds a List page: a limit <= 0 or above it means
	// MaxListLimit.
	MaxListLimit = 1000
	// DefaultContentType is stored when PutOptions.ContentType is empty.
	DefaultContentType = "application/octet-stream"
	// MaxContentTypeLen bounds PutOptions.ContentType.
	MaxContentTypeLen = 256
)

var (
	// ErrNotFound: no blob under the key.
	ErrNotFound = errors.New("blobstore: not found")
	// ErrInvalidKey: a key that is empty, too long, absolute, has a ".."
	// or empty segment, a NUL or control byte, or is not UTF-8.
	ErrInvalidKey = errors.New("blobstore: invalid key")
	// ErrChecksum: content does not match its SHA-256 (on write: the
	// expected one; on read: the one stored with it).
	ErrChecksum = errors.New("blobstore: checksum mismatch")
	// ErrRange: a range that starts past the end of the blob.
	ErrRange = errors.New("blobstore: range not satisfiable")
	// ErrUnavailable: the storage service failed or timed out (5xx,
	// connection errors); retrying later may work.
	ErrUnavailable = errors.New("blobstore: storage unavailable")
	// ErrDenied: the storage service refused the credentials (401/403).
	ErrDenied = errors.New("blobstore: access denied")
	// ErrInvalidArgument: PutOptions or a page token that cannot be
	// valid (a SHA256 that is not 64 hex digits, a content type with
	// control characters, a Size below -1).
	ErrInvalidArgument = errors.New("blobstore: invalid argument")
)

// Info describes a stored blob.
type Info struct {
	Key         string
	Size        int64
	SHA256      string // lowercase hex
	ContentType string
	ModTime     time.Time
}

// PutOptions qualify a Put.
type PutOptions struct {
	// ContentType is stored with the blob; empty means
	// DefaultContentType.
	ContentType string
	// Size is the content's length if known, else -1 (a backend may use it
	// to choose a single or multipart upload). Content of another length
	// fails the Put with ErrChecksum and stores nothing. The zero value
	// means an empty blob: pass -1 when the length is unknown.
	Size int64
	// SHA256, if set, is the content's expected digest (hex): a mismatch
	// fails the Put with ErrChecksum and stores nothing.
	SHA256 string
}

// Normalize validates the options for a backend's Put: ContentType
// defaulted, SHA256 lowercased. Errors match ErrInvalidArgument.
func (o PutOptions) Normalize() (PutOptions, error) {
	if o.Size < -1 {
		return o, fmt.Errorf("%w: size %d (use -1 for unknown)", ErrInvalidArgument, o.Size)
	}
	if o.SHA256 != "" {
		if len(o.SHA256) != 2*sha256.Size {
			return o, fmt.Errorf("%w: SHA256 %q is not 64 hex digits", ErrInvalidArgument, o.SHA256)
		}
		if _, err := hex.DecodeString(o.SHA256); err != nil {
			return o, fmt.Errorf("%w: SHA256 %q is not 64 hex digits", ErrInvalidArgument, o.SHA256)
		}
		o.SHA256 = strings.ToLower(o.SHA256)
	}
	if o.ContentType == "" {
		o.ContentType = DefaultContentType
	}
	if len(o.ContentType) > MaxContentTypeLen {
		return o, fmt.Errorf("%w: content type of %d bytes, max %d", ErrInvalidArgument, len(o.ContentType), MaxContentTypeLen)
	}
	for i := 0; i < len(o.ContentType); i++ {
		if c := o.ContentType[i]; c < 0x20 || c > 0x7e {
			return o, fmt.Errorf("%w: content type %q is not printable ASCII", ErrInvalidArgument, o.ContentType)
		}
	}
	return o, nil
}

// ListLimit is the page size a backend uses for a List limit.
func ListLimit(limit int) int {
	if limit <= 0 || limit > MaxListLimit {
		return MaxListLimit
	}
	return limit
}

// VerifyReader returns rc wrapped so that reading it to the end checks
// that it held size bytes with the given SHA-256 (lowercase hex): if not,
// the last Read returns an error matching ErrChecksum instead of io.EOF.
// It is what a backend's Get returns for a read of a whole blob. An empty
// sha checks only the size.
func VerifyReader(rc io.ReadCloser, key string, size int64, sha string) io.ReadCloser {
	return &verifyReader{rc: rc, key: key, size: size, want: sha, h: sha256.New()}
}

type verifyReader struct {
	rc   io.ReadCloser
	key  string
	size int64
	want string
	h    hash.Hash
	n    int64
	err  error // sticky: the verdict once reached
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case v.n > v.size:
		v.err = fmt.Errorf("%w: %q: read more than its %d bytes", ErrChecksum, v.key, v.size)
		return n, v.err
	case errors.Is(err, io.EOF):
		if v.n != v.size {
			v.err = fmt.Errorf("%w: %q: read %d of its %d bytes", ErrChecksum, v.key, v.n, v.size)
		} else if got := hex.EncodeToString(v.h.Sum(nil)); v.want != "" && got != v.want {
			v.err = fmt.Errorf("%w: %q: content has SHA-256 %s, stored %s", ErrChecksum, v.key, got, v.want)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }

// Backend stores blobs. Safe for concurrent use.
type Backend interface {
	// Put stores r's content under key, replacing any blob there once it
	// is complete, and returns its Info (SHA-256 computed while reading).
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error)
	// Get reads length bytes from offset off (length < 0: to the end).
	// A read of the whole blob checks its SHA-256 and fails with
	// ErrChecksum at the end if it does not match. off past the size is
	// ErrRange; off == size reads nothing.
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, Info, error)
	// Stat returns a blob's Info.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns up to limit blobs whose keys start with prefix, in key
	// order, after the page token (the next token of the previous page; ""
	// for the first page). next is "" on the last page. A limit <= 0 or
	// above MaxListLimit means MaxListLimit. A page may hold fewer than
	// limit blobs and still have a next token (blobs deleted meanwhile).
	List(ctx context.Context, prefix, pageToken string, limit int) (blobs []Info, next string, err error)
	// Delete removes a blob; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// CheckKey validates a key: 1..MaxKeyLen bytes of UTF-8, segments
// separated by "/", none empty, "." or "..", no leading "/", no NUL,
// control characters or backslashes.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, max %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidKey)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%w: %q is absolute", ErrInvalidKey, key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: %q has a control character or backslash", ErrInvalidKey, key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has an empty, \".\" or \"..\" segment", ErrInvalidKey, key)
		}
	}
	return nil
}

// CheckPrefix validates a List prefix: empty, or a key prefix (it may end
// with "/").
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return CheckKey(strings.TrimSuffix(prefix, "/"))
}

// CopyContext copies r to w until EOF, checking ctx between reads of up
// to 256 KiB; a read error is wrapped as "read content".
func CopyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read content: %w", err)
		}
	}
}
