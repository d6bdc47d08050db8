package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"

	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrations holds one directory of goose SQL files per dialect; both
// define the same tables at the same versions.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// migrate applies the pending migrations under the dialect's lock and
// returns their versions.
func migrate(ctx context.Context, db *sqlx.DB, o Options) ([]int64, error) {
	var (
		dialect goose.Dialect
		dir     string
		opt     goose.ProviderOption
	)
	switch o.Driver {
	case DriverSQLite:
		dialect, dir = goose.DialectSQLite3, "migrations/sqlite"
		opt = goose.WithLocker(&fileLocker{path: o.DSN + ".lock"})
	case DriverPostgres:
		id, err := pgLockID(ctx, db)
		if err != nil {
			return nil, err
		}
		dialect, dir = goose.DialectPostgres, "migrations/postgres"
		opt = goose.WithSessionLocker(pgLocker{id: id})
	default:
		return nil, fmt.Errorf("%w: driver %q", ErrInvalid, o.Driver)
	}
	fsys, err := fs.Sub(migrations, dir)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	// The provider is not closed: its Close would close db, which is ours.
	p, err := goose.NewProvider(dialect, db.DB, fsys, opt)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate %s: %w", o.Driver, err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// pgLockID returns the advisory lock that serialises migrations of the
// connection's current schema, so deployments (and tests) in different
// schemas of one database do not wait for each other.
func pgLockID(ctx context.Context, db *sqlx.DB) (int64, error) {
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return 0, fmt.Errorf("store: postgres: current schema: %w", err)
	}
	if !schema.Valid {
		return 0, errors.New("store: postgres: no current schema: the search_path names no existing schema")
	}
	h := fnv.New64a()
	h.Write([]byte("zeroci datastore migrations\x00" + schema.String))
	return int64(h.Sum64()), nil
}

// pgLocker is a goose SessionLocker on a PostgreSQL session advisory lock.
// Unlike lock.NewPostgresSessionLocker, which probes with
// pg_try_advisory_lock once a second, it waits in pg_advisory_lock, so a
// process that starts beside another migrates as soon as the other is
// done; ctx still bounds the wait (lib/pq cancels the query).
type pgLocker struct{ id int64 }

var _ lock.SessionLocker = pgLocker{}

func (l pgLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", l.id); err != nil {
		return fmt.Errorf("store: postgres: migration lock: %w", err)
	}
	return nil
}

func (l pgLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", l.id).Scan(&ok); err != nil {
		return fmt.Errorf("store: postgres: migration unlock: %w", err)
	}
	if !ok {
		return errors.New("store: postgres: migration unlock: the lock was not held")
	}
	return nil
}
