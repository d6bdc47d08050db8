// Package eventlog is the event hub's durable, append-only log: one
// global, gap-free sequence of records, each stored once by its ID.
//
// Two backends implement Log: package filelog (segment files in the data
// directory, the embedded default) and package pglog (a PostgreSQL table,
// for split deployments and hub fail-over). Package eventlogtest is the
// conformance suite both run.
//
// The log knows nothing of event contents: a record is an ID, the time it
// was appended and an opaque body (the hub stores an event's JSON there).
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limits.
const (
	// MaxIDLen bounds Entry.ID.
	MaxIDLen = 64
	// MaxBodyLen bounds Entry.Body.
	MaxBodyLen = 1 << 20
	// MaxBatch bounds the entries of one Append.
	MaxBatch = 4096
	// MaxReadLimit bounds Read's limit.
	MaxReadLimit = 10000
)

var (
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("eventlog: closed")
	// ErrCorrupt: stored data failed its checksum or framing somewhere other
	// than a torn tail (which Open truncates and reports instead).
	ErrCorrupt = errors.New("eventlog: corrupt")
	// ErrInvalid: an entry or argument is out of bounds (empty or long ID,
	// body too large, batch too large, negative since, bad limit).
	ErrInvalid = errors.New("eventlog: invalid")
	// ErrLocked: another process holds the log (filelog's directory lock).
	ErrLocked = errors.New("eventlog: locked by another process")
)

// TooOldError is returned by Read when records after Since are no longer
// held: retention removed them. First is the oldest sequence still held;
// a reader may restart from First-1. It matches ErrTooOld.
type TooOldError struct {
	Since int64
	First int64
}

// ErrTooOld: see TooOldError.
var ErrTooOld = errors.New("eventlog: too old")

func (e *TooOldError) Error() string {
	return fmt.Sprintf("eventlog: records after %d are gone (retention); the oldest held is %d", e.Since, e.First)
}

func (e *TooOldError) Unwrap() error { return ErrTooOld }

// Entry is one record to append.
type Entry struct {
	ID   string // chosen by the publisher; 1..MaxIDLen bytes; a repeat is not stored again
	Body []byte // 0..MaxBodyLen bytes
}

// Record is a stored entry.
type Record struct {
	Seq  int64     // from 1, gap-free
	ID   string    // Entry.ID
	Time time.Time // when it was appended (UTC, from the appending process's clock)
	Body []byte    // Entry.Body; owned by the caller
}

// Result tells what Append did with one entry.
type Result struct {
	Seq       int64 // the entry's sequence number: new, or the first one of its ID
	Duplicate bool  // the ID was stored already (within the dedup window); nothing was appended
}

// Stats describe a log.
type Stats struct {
	First int64 // oldest sequence held; Head+1 when the log is empty
	Head  int64 // latest sequence; 0 for an empty log
	Bytes int64 // storage used, approximately
}

// Log is a durable append-only log. Safe for concurrent use.
type Log interface {
	// Append stores entries in order with consecutive sequence numbers
	// and returns once they are durable (fsynced / committed): results[i]
	// answers entries[i]. An entry whose ID is already stored, or appears
	// earlier in the same batch, is not stored again: its Result has the
	// first Seq and Duplicate set. Concurrent Appends are group-committed:
	// the backend makes many callers' entries durable with one fsync or
	// one transaction. On error nothing of this call is acknowledged; some
	// entries may be stored anyway (a retry with the same IDs is safe).
	Append(ctx context.Context, entries []Entry) ([]Result, error)
	// Read returns up to limit records with Seq > since, oldest first; an
	// empty result means nothing after since yet. If retention removed
	// records after since, it returns a *TooOldError.
	Read(ctx context.Context, since int64, limit int) ([]Record, error)
	// Stats returns the log's bounds.
	Stats(ctx context.Context) (Stats, error)
	// Compact removes whole segments / rows whose records are all older
	// than before, and never the latest record. It returns how many
	// records it removed. Readers asking for them get a TooOldError.
	Compact(ctx context.Context, before time.Time) (int64, error)
	// Close releases the log. Idempotent.
	Close() error
}

// CheckEntries validates a batch for Append.
func CheckEntries(entries []Entry) error {
	if len(entries) > MaxBatch {
		return fmt.Errorf("%w: %d entries in one append, max %d", ErrInvalid, len(entries), MaxBatch)
	}
	for i, e := range entries {
		if len(e.ID) == 0 || len(e.ID) > MaxIDLen {
			return fmt.Errorf("%w: entry %d: id of %d bytes, want 1..%d", ErrInvalid, i, len(e.ID), MaxIDLen)
		}
		if len(e.Body) > MaxBodyLen {
			return fmt.Errorf("%w: entry %d: body of %d bytes, max %d", ErrInvalid, i, len(e.Body), MaxBodyLen)
		}
	}
	return nil
}

// CheckRead validates Read's arguments.
func CheckRead(since int64, limit int) error {
	if since < 0 {
		return fmt.Errorf("%w: since %d, want >= 0", ErrInvalid, since)
	}
	if limit < 1 || limit > MaxReadLimit {
		return fmt.Errorf("%w: limit %d, want 1..%d", ErrInvalid, limit, MaxReadLimit)
	}
	return nil
}
