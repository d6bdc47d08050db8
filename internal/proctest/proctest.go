//go:build unix

// Package proctest answers questions tests ask about processes.
package proctest

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Gone reports whether pid runs nothing: there is no such process, or it
// is a zombie. Where PID 1 does not reap orphans (as in some sandboxes), a
// killed orphan stays a zombie and kill(pid, 0) keeps succeeding.
func Gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may
	// hold spaces or parentheses itself.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}
