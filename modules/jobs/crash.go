//go:build unix

// Recovery from a runner process killed without a chance to clean up:
// the leftover processes of its jobs, and one process per data dir.

package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/zeroci/zeroci/contracts"
)

// leaseEnv names the environment variable that carries a job's lease id
// into its processes. A runner killed with SIGKILL cannot stop its jobs;
// the next process of the same runner finds what they left running by this
// variable and kills it (reapLeftovers).
const leaseEnv = "ZEROCI_LEASE"

// reapLeftovers kills the processes, and their process groups, whose
// environment carries one of leases: jobs an earlier process of this
// runner started and could not stop. It reads /proc (Linux); where there
// is none it does nothing. It returns how many processes it signalled.
func reapLeftovers(leases []contracts.ID) int {
	if len(leases) == 0 {
		return 0
	}
	marks := make([][]byte, len(leases))
	for i, l := range leases {
		marks[i] = []byte(leaseEnv + "=" + l.String())
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	selfGroup := syscall.Getpgrp()
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == self {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !hasEnvEntry(environ, marks) {
			continue
		}
		// The job's group (its shell's, made with Setpgid) holds what
		// it forked, marked or not.
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != selfGroup {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		n++
	}
	return n
}

// hasEnvEntry reports whether environ (NUL-separated NAME=VALUE entries)
// holds one of marks exactly.
func hasEnvEntry(environ []byte, marks [][]byte) bool {
	for entry := range bytes.SplitSeq(environ, []byte{0}) {
		if !bytes.HasPrefix(entry, []byte(leaseEnv+"=")) {
			continue
		}
		for _, m := range marks {
			if bytes.Equal(entry, m) {
				return true
			}
		}
	}
	return false
}

// lockFile opens path and takes an exclusive flock on it, or says that
// another process holds it. Closing the file releases the lock (as does
// the process's death).
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is held by another runner process: each runner needs its own data dir", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
