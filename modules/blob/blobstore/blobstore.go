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
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxKeyLen bounds a key.
const MaxKeyLen = 1024

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
	ContentType string
	// Size is the content's length if known, else -1 (a backend may use it
	// to choose a single or multipart upload).
	Size int64
	// SHA256, if set, is the content's expected digest: a mismatch fails
	// the Put with ErrChecksum and stores nothing.
	SHA256 string
}

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
	// for the first page). next is "" on the last page.
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
