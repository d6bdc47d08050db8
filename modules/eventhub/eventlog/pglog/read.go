package pglog

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// Read implements eventlog.Log: one statement, so the compaction bound it
// checks and the rows it returns come from one snapshot.
func (l *Log) Read(ctx context.Context, since int64, limit int) ([]eventlog.Record, error) {
	if err := eventlog.CheckRead(since, limit); err != nil {
		return nil, fmt.Errorf("pglog: read: %w", err)
	}
	if l.isClosed() {
		return nil, fmt.Errorf("pglog: read: %w", eventlog.ErrClosed)
	}
	rows, err := l.db.QueryContext(ctx, l.q.read, since, limit)
	if err != nil {
		return nil, l.fail("read", err)
	}
	defer rows.Close()
	var first int64
	recs := []eventlog.Record{}
	for rows.Next() {
		var (
			seq  sql.NullInt64
			id   []byte
			t    sql.NullTime
			body []byte
		)
		if err := rows.Scan(&first, &seq, &id, &t, &body); err != nil {
			return nil, l.fail("read", err)
		}
		if !seq.Valid { // the metadata row alone: nothing after since
			continue
		}
		if body == nil {
			body = []byte{}
		}
		recs = append(recs, eventlog.Record{Seq: seq.Int64, ID: string(id), Time: t.Time.UTC(), Body: body})
	}
	if err := rows.Err(); err != nil {
		return nil, l.fail("read", err)
	}
	if first == 0 {
		return nil, fmt.Errorf("pglog: read: metadata row \"first\" is missing: %w", eventlog.ErrCorrupt)
	}
	if since < first-1 {
		return nil, &eventlog.TooOldError{Since: since, First: first}
	}
	return recs, nil
}

// Stats implements eventlog.Log. Bytes is the records table's size with
// its indexes and TOAST.
func (l *Log) Stats(ctx context.Context) (eventlog.Stats, error) {
	if l.isClosed() {
		return eventlog.Stats{}, fmt.Errorf("pglog: stats: %w", eventlog.ErrClosed)
	}
	var s eventlog.Stats
	var first, head sql.NullInt64
	if err := l.db.QueryRowContext(ctx, l.q.stats, l.q.eventsName).Scan(&first, &head, &s.Bytes); err != nil {
		return eventlog.Stats{}, l.fail("stats", err)
	}
	if !first.Valid || !head.Valid {
		return eventlog.Stats{}, fmt.Errorf("pglog: stats: metadata rows are missing: %w", eventlog.ErrCorrupt)
	}
	s.First, s.Head = first.Int64, head.Int64
	return s, nil
}

// Compact implements eventlog.Log: it deletes the oldest records whose
// time is before before, never the latest one, in transactions of at most
// a few thousand rows, moving the "first" bound in each. Appends are not
// held up: they lock the "head" row, compaction the "first" one.
func (l *Log) Compact(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		if l.isClosed() {
			return total, fmt.Errorf("pglog: compact: %w", eventlog.ErrClosed)
		}
		n, more, err := l.compactOnce(ctx, before)
		total += n
		if err != nil {
			return total, l.fail("compact", err)
		}
		if !more {
			return total, nil
		}
	}
}

// compactOnce deletes the leading records older than before among the
// next Log.compactChunk ones, and reports whether more may follow.
func (l *Log) compactOnce(ctx context.Context, before time.Time) (removed int64, more bool, err error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var first, head int64
	if err := tx.QueryRowContext(ctx, l.q.lockFirst).Scan(&first); err != nil {
		return 0, false, fmt.Errorf("lock first: %w", err)
	}
	if err := tx.QueryRowContext(ctx, l.q.head).Scan(&head); err != nil {
		return 0, false, fmt.Errorf("read head: %w", err)
	}
	cut, scanned, whole, err := l.compactCut(ctx, tx, first, head, before)
	if err != nil {
		return 0, false, err
	}
	if cut < first {
		return 0, false, nil
	}
	res, err := tx.ExecContext(ctx, l.q.compactDel, cut)
	if err != nil {
		return 0, false, fmt.Errorf("delete through seq %d: %w", cut, err)
	}
	if removed, err = res.RowsAffected(); err != nil {
		return 0, false, fmt.Errorf("delete through seq %d: %w", cut, err)
	}
	if _, err := tx.ExecContext(ctx, l.q.setFirst, cut+1); err != nil {
		return 0, false, fmt.Errorf("move first: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("commit: %w", err)
	}
	return removed, whole && scanned == l.compactChunk, nil
}

// compactCut scans the next records from first and returns the last seq of
// their leading run that may go (older than before, not the head), how
// many it scanned, and whether every scanned record may go.
func (l *Log) compactCut(ctx context.Context, tx *sql.Tx, first, head int64, before time.Time) (cut int64, scanned int, whole bool, err error) {
	rows, err := tx.QueryContext(ctx, l.q.compactScan, first, l.compactChunk)
	if err != nil {
		return 0, 0, false, fmt.Errorf("scan: %w", err)
	}
	defer rows.Close()
	cut, whole = first-1, true
	for rows.Next() {
		var seq int64
		var t time.Time
		if err := rows.Scan(&seq, &t); err != nil {
			return 0, 0, false, fmt.Errorf("scan: %w", err)
		}
		scanned++
		if whole && seq < head && t.Before(before) {
			cut = seq
		} else {
			whole = false
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, false, fmt.Errorf("scan: %w", err)
	}
	return cut, scanned, whole, nil
}
