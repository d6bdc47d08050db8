//go:build unix

package filelog

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// lockDir takes an exclusive flock on the open directory without waiting.
// It is released when the file is closed (or the process dies).
func lockDir(d *os.File) error {
	err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return eventlog.ErrLocked
	}
	if err != nil {
		return fmt.Errorf("flock: %w", err)
	}
	return nil
}
