// Package pglog is the PostgreSQL backend of eventlog.Log: one table of
// records and a small metadata table beside it, shared safely by every hub
// process that opens the same table (fail-over, split deployments).
//
// Layout. The records table (Options.Table, default "zeroci_events") holds
// seq bigint primary key, id bytea unique, time timestamptz, body bytea.
// The metadata table (Table+"_meta") holds two rows: "head", the latest
// sequence assigned and its time, and "first", the oldest sequence held.
// They are the log's bounds even when no row is left to show them.
//
// Writes. One writer goroutine per Log gathers every pending Append and
// stores them in one transaction (group commit). The transaction first
// locks the "head" row (SELECT ... FOR UPDATE), so appends from all
// processes are serialised per table: each reads the head another process
// committed, looks up its batch's IDs among the stored ones (duplicates
// are answered, not stored), inserts the new records with the next
// sequence numbers and moves the head. Because the lock is held until
// commit, sequence N+1 never becomes visible before N: readers never see
// a hole that fills later. The row lock does what a transaction-scoped
// advisory lock would, but is scoped to the table, so logs in other
// tables or schemas never wait for each other.
//
// Time. A record's time comes from the appending process's clock, in UTC
// rounded up to microseconds (PostgreSQL's precision; up, so that it is
// never before the moment of the Append), and never goes back: it is at
// least the head's time, whichever process wrote that.
//
// IDs are stored as bytea rather than text so that any Go string is stored
// exactly: text rejects NUL bytes and invalid UTF-8.
package pglog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// DefaultTable is the records table used when Options.Table is empty.
const DefaultTable = "zeroci_events"

// MaxTableLen bounds Options.Table: PostgreSQL identifiers have at most 63
// bytes and the metadata table adds "_meta".
const MaxTableLen = 63 - len(metaSuffix)

const metaSuffix = "_meta"

// Defaults of Options.
const (
	DefaultMaxConns     = 8
	DefaultWriteTimeout = time.Minute
)

// Group-commit and compaction bounds.
const (
	// maxGroupEntries and maxGroupBytes stop gathering more Appends into
	// one transaction (one Append is never split: a single one may exceed
	// them).
	maxGroupEntries = 16384
	maxGroupBytes   = 64 << 20
	// defaultStmtBytes bounds the bodies of one INSERT statement; a
	// transaction runs as many as it needs.
	defaultStmtBytes = 8 << 20
	// defaultCompactChunk bounds the rows one compaction transaction
	// deletes, so appends and readers never wait long behind it.
	defaultCompactChunk = 10000
	// queueLen is how many Appends may wait for the writer before Append
	// blocks (back-pressure).
	queueLen = 1024
)

// ddlLockKey is the transaction-scoped advisory lock taken around table
// creation, so two processes opening at once do not race in CREATE TABLE.
const ddlLockKey = 0x7a65726f6369_01 // "zeroci", 1

var tableRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Options configure Open. The zero value is valid.
type Options struct {
	// Table names the records table; the metadata table is Table+"_meta".
	// Lowercase letters, digits and underscores, not starting with a
	// digit, at most MaxTableLen bytes; default DefaultTable. It is not
	// schema-qualified: the schema is the DSN's search_path.
	Table string
	// MaxConns bounds the connection pool: one connection is the writer's
	// while it commits, the rest serve Read, Stats and Compact. Default
	// DefaultMaxConns.
	MaxConns int
	// WriteTimeout bounds one group-commit transaction, and so how long
	// Close waits for the writer to finish. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Now is the clock stamped on appended records. Default time.Now.
	Now func() time.Time
}

// Validate reports whether o is usable; a zero field means its default.
// Its errors match eventlog.ErrInvalid.
func (o Options) Validate() error {
	if o.Table != "" && (len(o.Table) > MaxTableLen || !tableRE.MatchString(o.Table)) {
		return fmt.Errorf("%w: table %q: want [a-z_][a-z0-9_]* of at most %d bytes", eventlog.ErrInvalid, o.Table, MaxTableLen)
	}
	if o.MaxConns < 0 {
		return fmt.Errorf("%w: max conns %d, want >= 0 (0: default %d)", eventlog.ErrInvalid, o.MaxConns, DefaultMaxConns)
	}
	if o.WriteTimeout < 0 {
		return fmt.Errorf("%w: write timeout %v, want >= 0 (0: default %v)", eventlog.ErrInvalid, o.WriteTimeout, DefaultWriteTimeout)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Log is an eventlog.Log in a PostgreSQL table. Safe for concurrent use,
// also by several processes (or Logs) on the same table.
type Log struct {
	db   *sql.DB
	opts Options
	q    queries

	// mu guards closed and the sends on reqs against Close closing reqs.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request
	quit   chan struct{} // closed first by Close: unblocks senders, fails new calls
	done   chan struct{} // closed by the writer when it exits

	closeOnce sync.Once
	closeErr  error

	// stmts are the writer's statements, prepared once per connection.
	stmts writerStmts

	// commits counts group-commit transactions (benchmarks and tests).
	commits atomic.Int64
	// stmtBytes and compactChunk are defaultStmtBytes and
	// defaultCompactChunk; tests lower them.
	stmtBytes    int
	compactChunk int
}

var _ eventlog.Log = (*Log)(nil)

// Open connects to the database named by dsn (a lib/pq URL or key=value
// DSN), creates the tables if they are missing and starts the writer. It
// is safe for several processes to open the same table at once.
func Open(ctx context.Context, dsn string, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("pglog: open: %w", err)
	}
	opts = opts.withDefaults()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("pglog: open: %w", err)
	}
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	l := &Log{
		db:           db,
		opts:         opts,
		q:            newQueries(pq.QuoteIdentifier(opts.Table), pq.QuoteIdentifier(opts.Table+metaSuffix)),
		reqs:         make(chan *request, queueLen),
		quit:         make(chan struct{}),
		done:         make(chan struct{}),
		stmtBytes:    defaultStmtBytes,
		compactChunk: defaultCompactChunk,
	}
	if err := l.setup(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("pglog: open %s: %w", opts.Table, err)
	}
	if err := l.prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("pglog: open %s: %w", opts.Table, err)
	}
	go l.run()
	return l, nil
}

// setup creates the tables if missing and checks their shape.
func (l *Log) setup(ctx context.Context) error {
	if err := l.db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(ddlLockKey)); err != nil {
		return fmt.Errorf("create tables: lock: %w", err)
	}
	for _, stmt := range []string{l.q.createEvents, l.q.createMeta, l.q.initMeta} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	return l.checkShape(ctx)
}

// checkShape fails when the tables exist with other columns or without
// their metadata rows, so a misconfigured Table fails at Open rather than
// at the first Append.
func (l *Log) checkShape(ctx context.Context) error {
	rows, err := l.db.QueryContext(ctx, l.q.shapeEvents)
	if err != nil {
		return fmt.Errorf("table has an unexpected shape: %w", err)
	}
	cols, err := rows.ColumnTypes()
	rows.Close()
	if err != nil {
		return fmt.Errorf("table has an unexpected shape: %w", err)
	}
	want := []string{"INT8", "BYTEA", "TIMESTAMPTZ", "BYTEA"}
	for i, c := range cols {
		if got := c.DatabaseTypeName(); got != want[i] {
			return fmt.Errorf("table has an unexpected shape: column %s is %s, want %s", c.Name(), got, want[i])
		}
	}
	var first, head int64
	if err := l.db.QueryRowContext(ctx, l.q.bounds).Scan(&first, &head); err != nil {
		return fmt.Errorf("metadata table: %w", err)
	}
	if first < 1 || head < 0 || first > head+1 {
		return fmt.Errorf("metadata table: first %d, head %d: %w", first, head, eventlog.ErrCorrupt)
	}
	return nil
}

// Close stops accepting Appends, lets the writer commit the ones already
// queued (each transaction bounded by Options.WriteTimeout), and closes
// the connections. Appends waiting to be queued, and every call after
// Close, return eventlog.ErrClosed. Idempotent: a second Close returns
// what the first did.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		close(l.quit)
		l.mu.Lock()
		l.closed = true
		close(l.reqs)
		l.mu.Unlock()
		<-l.done
		for _, st := range []*sql.Stmt{l.stmts.lockHead, l.stmts.existing, l.stmts.insert, l.stmts.setHead} {
			st.Close() //nolint:errcheck // closing the database below reports what matters
		}
		if err := l.db.Close(); err != nil {
			l.closeErr = fmt.Errorf("pglog: close: %w", err)
		}
	})
	return l.closeErr
}

// isClosed reports whether Close has begun.
func (l *Log) isClosed() bool {
	select {
	case <-l.quit:
		return true
	default:
		return false
	}
}

// fail wraps err for op, as eventlog.ErrClosed when Close closed the
// connections under the call.
func (l *Log) fail(op string, err error) error {
	if l.isClosed() && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pglog: %s: %w", op, eventlog.ErrClosed)
	}
	return fmt.Errorf("pglog: %s: %w", op, err)
}

// queries are the statements of one table pair, built once.
type queries struct {
	eventsName                                         string // quoted, for ::regclass
	createEvents, createMeta, initMeta, shapeEvents    string
	bounds, stats                                      string
	lockHead, existing, insert, setHead                string
	read                                               string
	lockFirst, head, compactScan, compactDel, setFirst string
}

func newQueries(events, meta string) queries {
	return queries{
		eventsName: events,
		createEvents: `CREATE TABLE IF NOT EXISTS ` + events + ` (
			seq bigint PRIMARY KEY,
			id bytea NOT NULL UNIQUE,
			time timestamptz NOT NULL,
			body bytea NOT NULL)`,
		createMeta: `CREATE TABLE IF NOT EXISTS ` + meta + ` (
			k text PRIMARY KEY,
			v bigint NOT NULL,
			t timestamptz)`,
		// A metadata table created beside existing rows starts from them.
		initMeta: `INSERT INTO ` + meta + ` (k, v, t)
			SELECT 'head', coalesce(max(seq), 0), max(time) FROM ` + events + `
			UNION ALL
			SELECT 'first', coalesce(min(seq), 1), NULL FROM ` + events + `
			ON CONFLICT (k) DO NOTHING`,
		shapeEvents: `SELECT seq, id, time, body FROM ` + events + ` LIMIT 0`,
		bounds: `SELECT (SELECT v FROM ` + meta + ` WHERE k = 'first'),
			(SELECT v FROM ` + meta + ` WHERE k = 'head')`,
		stats: `SELECT (SELECT v FROM ` + meta + ` WHERE k = 'first'),
			(SELECT v FROM ` + meta + ` WHERE k = 'head'),
			pg_total_relation_size($1::regclass)`,

		lockHead: `SELECT v, t FROM ` + meta + ` WHERE k = 'head' FOR UPDATE`,
		existing: `SELECT id, seq FROM ` + events + ` WHERE id = ANY($1::bytea[])`,
		insert: `INSERT INTO ` + events + ` (seq, id, time, body)
			SELECT $1::bigint + u.n - 1, u.id, $4, u.body
			FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS u(id, body, n)`,
		setHead: `UPDATE ` + meta + ` SET v = $1, t = $2 WHERE k = 'head'`,

		// One statement, so one snapshot: the bound and the rows agree
		// even while Compact runs.
		read: `SELECT f.v, e.seq, e.id, e.time, e.body
			FROM ` + meta + ` f
			LEFT JOIN LATERAL (
				SELECT seq, id, time, body FROM ` + events + `
				WHERE seq > $1 ORDER BY seq LIMIT $2
			) e ON true
			WHERE f.k = 'first'
			ORDER BY e.seq`,

		lockFirst:   `SELECT v FROM ` + meta + ` WHERE k = 'first' FOR UPDATE`,
		head:        `SELECT v FROM ` + meta + ` WHERE k = 'head'`,
		compactScan: `SELECT seq, time FROM ` + events + ` WHERE seq >= $1 ORDER BY seq LIMIT $2`,
		compactDel:  `DELETE FROM ` + events + ` WHERE seq <= $1`,
		setFirst:    `UPDATE ` + meta + ` SET v = $1 WHERE k = 'first'`,
	}
}
