//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/pressly/goose/v3/lock"
)

// fileLocker is a goose Locker on an exclusive flock(2) of a lock file
// beside the SQLite database: SQLite's own locks cover one transaction,
// and goose's migrations are several. flock locks belong to the open file,
// so two Opens in one process exclude each other as two processes do. The
// lock file stays; it holds nothing.
type fileLocker struct {
	path string
	f    *os.File // while locked
}

var _ lock.Locker = (*fileLocker)(nil)

// lockPoll is how often Lock retries a held lock. Migrations take
// milliseconds, so waiters should not wait long after one finishes.
const lockPoll = 5 * time.Millisecond

// Lock waits for the lock until ctx is done.
func (l *fileLocker) Lock(ctx context.Context, _ *sql.DB) error {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: sqlite: migration lock: %w", err)
	}
	var timer *time.Timer
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			l.f = f
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return fmt.Errorf("store: sqlite: migration lock %s: %w", l.path, err)
		}
		if timer == nil {
			timer = time.NewTimer(lockPoll)
			defer timer.Stop()
		} else {
			timer.Reset(lockPoll)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return fmt.Errorf("store: sqlite: waiting for migration lock %s: %w", l.path, context.Cause(ctx))
		case <-timer.C:
		}
	}
}

// Unlock releases the lock.
func (l *fileLocker) Unlock(context.Context, *sql.DB) error {
	if l.f == nil {
		return errors.New("store: sqlite: migration unlock: not locked")
	}
	f := l.f
	l.f = nil
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: sqlite: migration unlock %s: %w", l.path, err)
	}
	return nil
}
