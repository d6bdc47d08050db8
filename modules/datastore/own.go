package datastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"syscall"

	"github.com/zeroci/zeroci/modules/datastore/store"
)

// ErrOwned: another process runs the data store (or a rebuild) on the same
// database.
var ErrOwned = errors.New("datastore: the database is in use by a running data store")

// Own makes this process the database's only owner, the one that writes
// projections (the running module, or a rebuild), until release is
// called. It fails with ErrOwned while another process owns it. SQLite:
// an exclusive flock on DSN+".owner"; PostgreSQL: a session advisory lock
// named after the connection's current schema, so data stores in other
// schemas of the same database (other deployments, parallel tests) are not
// owners of this one.
func Own(ctx context.Context, so store.Options) (release func(), err error) {
	if so.Driver == store.DriverPostgres {
		return ownPostgres(ctx, so.DSN)
	}
	f, err := os.OpenFile(so.DSN+".owner", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("datastore: owner lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrOwned
		}
		return nil, fmt.Errorf("datastore: owner lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func ownPostgres(ctx context.Context, dsn string) (func(), error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("datastore: owner lock: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("datastore: owner lock: %w", err)
	}
	var schema sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil || !schema.Valid {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("datastore: owner lock: no current schema (%v)", err)
	}
	h := fnv.New64a()
	h.Write([]byte("zeroci datastore owner\x00" + schema.String))
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", int64(h.Sum64())).Scan(&ok); err != nil {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("datastore: owner lock: %w", err)
	}
	if !ok {
		conn.Close()
		db.Close()
		return nil, ErrOwned
	}
	return func() { conn.Close(); db.Close() }, nil // closing the session releases the lock
}
