//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package store

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
)

// fileLocker would serialise SQLite migrations with flock(2), which this
// platform lacks; SQLite is refused here rather than migrated unlocked.
type fileLocker struct{ path string }

func (l *fileLocker) Lock(context.Context, *sql.DB) error {
	return fmt.Errorf("store: sqlite: no file locking on %s: use postgres", runtime.GOOS)
}

func (l *fileLocker) Unlock(context.Context, *sql.DB) error { return nil }
