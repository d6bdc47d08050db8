package pglog

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// request is one Append waiting for the writer.
type request struct {
	ctx     context.Context
	entries []eventlog.Entry // copies: the caller may reuse its own once Append returns
	bytes   int
	done    chan reply // buffered: the writer never waits for a caller that gave up
}

type reply struct {
	results []eventlog.Result
	err     error
}

// writerStmts are the statements of the writer's transaction, prepared on
// the database so that each runs in one round trip.
type writerStmts struct {
	lockHead, existing, insert, setHead *sql.Stmt
}

// prepare prepares the writer's statements.
func (l *Log) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&l.stmts.lockHead, l.q.lockHead},
		{&l.stmts.existing, l.q.existing},
		{&l.stmts.insert, l.q.insert},
		{&l.stmts.setHead, l.q.setHead},
	} {
		st, err := l.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		*p.stmt = st
	}
	return nil
}

// Append implements eventlog.Log. It copies entries, queues them for the
// writer and waits until the transaction holding them commits. Cancelling
// ctx returns at once; entries already in a transaction may still be
// stored (a retry with the same IDs answers them as duplicates).
func (l *Log) Append(ctx context.Context, entries []eventlog.Entry) ([]eventlog.Result, error) {
	if err := eventlog.CheckEntries(entries); err != nil {
		return nil, fmt.Errorf("pglog: append: %w", err)
	}
	if l.isClosed() {
		return nil, fmt.Errorf("pglog: append: %w", eventlog.ErrClosed)
	}
	if len(entries) == 0 {
		return []eventlog.Result{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pglog: append: %w", err)
	}
	r := newRequest(ctx, entries)
	if err := l.enqueue(ctx, r); err != nil {
		return nil, fmt.Errorf("pglog: append: %w", err)
	}
	select {
	case rep := <-r.done:
		if rep.err != nil {
			return nil, fmt.Errorf("pglog: append: %w", rep.err)
		}
		return rep.results, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("pglog: append: %w", ctx.Err())
	}
}

// newRequest copies entries, all bodies into one buffer.
func newRequest(ctx context.Context, entries []eventlog.Entry) *request {
	n := 0
	for _, e := range entries {
		n += len(e.Body)
	}
	buf := make([]byte, 0, n)
	own := make([]eventlog.Entry, len(entries))
	for i, e := range entries {
		start := len(buf)
		buf = append(buf, e.Body...)
		own[i] = eventlog.Entry{ID: e.ID, Body: buf[start:len(buf):len(buf)]}
	}
	return &request{ctx: ctx, entries: own, bytes: n, done: make(chan reply, 1)}
}

// enqueue hands r to the writer.
func (l *Log) enqueue(ctx context.Context, r *request) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return eventlog.ErrClosed
	}
	select {
	case l.reqs <- r:
		return nil
	case <-l.quit:
		return eventlog.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the writer: it takes the queued Appends in groups and commits
// each group in one transaction, until Close closes the queue.
func (l *Log) run() {
	defer close(l.done)
	for r := range l.reqs {
		l.commit(l.gather(r))
	}
}

// gather adds to first every Append already queued, up to the group
// bounds.
func (l *Log) gather(first *request) []*request {
	group := []*request{first}
	n, size := len(first.entries), first.bytes
	for n < maxGroupEntries && size < maxGroupBytes {
		select {
		case r, ok := <-l.reqs:
			if !ok {
				return group
			}
			group = append(group, r)
			n += len(r.entries)
			size += r.bytes
		default:
			return group
		}
	}
	return group
}

// commit writes the group's live requests in one transaction and answers
// every request.
func (l *Log) commit(group []*request) {
	live := group[:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.done <- reply{err: err} // its caller has returned; nothing to write
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.WriteTimeout)
	results, err := l.write(ctx, live)
	cancel()
	for i, r := range live {
		if err != nil {
			r.done <- reply{err: err}
		} else {
			r.done <- reply{results: results[i]}
		}
	}
}

// write stores the group in one transaction and returns each request's
// results.
func (l *Log) write(ctx context.Context, group []*request) ([][]eventlog.Result, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	// Serialise with every other writer of this table until commit.
	var head int64
	var last sql.NullTime
	if err := tx.StmtContext(ctx, l.stmts.lockHead).QueryRowContext(ctx).Scan(&head, &last); err != nil {
		return nil, fmt.Errorf("lock head: %w", err)
	}

	// seqs maps each ID of the group to its stored sequence (0: new).
	seqs := make(map[string]int64)
	var lookup [][]byte
	for _, r := range group {
		for _, e := range r.entries {
			if _, ok := seqs[e.ID]; !ok {
				seqs[e.ID] = 0
				lookup = append(lookup, []byte(e.ID))
			}
		}
	}
	if err := l.lookup(ctx, tx, lookup, seqs); err != nil {
		return nil, err
	}

	now := ceilMicro(l.opts.Now().UTC())
	if last.Valid && now.Before(last.Time) {
		now = last.Time.UTC()
	}

	results := make([][]eventlog.Result, len(group))
	next := head + 1
	ins := inserter{l: l, tx: tx, time: now, start: next}
	for gi, r := range group {
		res := make([]eventlog.Result, len(r.entries))
		for i, e := range r.entries {
			if s := seqs[e.ID]; s != 0 {
				res[i] = eventlog.Result{Seq: s, Duplicate: true}
				continue
			}
			seqs[e.ID] = next
			res[i] = eventlog.Result{Seq: next}
			next++
			if err := ins.add(ctx, e); err != nil {
				return nil, err
			}
		}
		results[gi] = res
	}
	if err := ins.flush(ctx); err != nil {
		return nil, err
	}
	if next > head+1 {
		if _, err := tx.StmtContext(ctx, l.stmts.setHead).ExecContext(ctx, next-1, now); err != nil {
			return nil, fmt.Errorf("move head: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	l.commits.Add(1)
	return results, nil
}

// lookup fills seqs with the sequences of the IDs already stored.
func (l *Log) lookup(ctx context.Context, tx *sql.Tx, ids [][]byte, seqs map[string]int64) error {
	rows, err := tx.StmtContext(ctx, l.stmts.existing).QueryContext(ctx, pq.ByteaArray(ids))
	if err != nil {
		return fmt.Errorf("look up ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id []byte
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			return fmt.Errorf("look up ids: %w", err)
		}
		seqs[string(id)] = seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up ids: %w", err)
	}
	return nil
}

// inserter batches new records into INSERT statements of at most
// Log.stmtBytes of bodies, with consecutive sequences from start.
type inserter struct {
	l      *Log
	tx     *sql.Tx
	time   time.Time
	start  int64
	ids    [][]byte
	bodies [][]byte
	size   int
}

func (s *inserter) add(ctx context.Context, e eventlog.Entry) error {
	if len(s.ids) > 0 && s.size+len(e.Body) > s.l.stmtBytes {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	s.ids = append(s.ids, []byte(e.ID))
	s.bodies = append(s.bodies, e.Body)
	s.size += len(e.Body)
	return nil
}

func (s *inserter) flush(ctx context.Context) error {
	if len(s.ids) == 0 {
		return nil
	}
	if _, err := s.tx.StmtContext(ctx, s.l.stmts.insert).ExecContext(ctx, s.start, pq.ByteaArray(s.ids), pq.ByteaArray(s.bodies), s.time); err != nil {
		return fmt.Errorf("insert %d records from seq %d: %w", len(s.ids), s.start, err)
	}
	s.start += int64(len(s.ids))
	s.ids, s.bodies, s.size = s.ids[:0], s.bodies[:0], 0
	return nil
}

// ceilMicro rounds t up to PostgreSQL's microseconds: a record's time is
// never before the moment it was appended, so a Compact(before) with
// before taken earlier never removes it.
func ceilMicro(t time.Time) time.Time {
	if r := t.Truncate(time.Microsecond); r.Before(t) {
		return r.Add(time.Microsecond)
	}
	return t
}
