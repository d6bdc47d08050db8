//go:build unix

package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// groupRun is one process run in its own process group, with hooks for what
// else stopping it takes (the container executor asks the engine).
type groupRun struct {
	cmd     *exec.Cmd
	timeout time.Duration
	opts    options
	out     Output
	// onTerminate and onKill, when set, run after the group got SIGTERM
	// and SIGKILL respectively. They must return within a bounded time.
	onTerminate, onKill func()
}

// run starts g.cmd and returns when it and every process of its group are
// gone and its output is read (or the drain bound passed).
//
// Stopping: on timeout or ctx's end the group gets SIGTERM; when it is not
// gone after the grace period, SIGKILL. When the script ends on its own,
// what it left running in its group is stopped the same way, so no job
// leaves processes behind. A process that left the group (setsid) is out of
// reach; the drain bound keeps it from holding Run through the pipes.
func (g *groupRun) run(ctx context.Context) Result {
	var res Result
	if ctx.Err() != nil {
		res.Canceled = true // not started
		return res
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		res.Err = fmt.Errorf("%w: pipe: %v", ErrStart, err)
		return res
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		res.Err = fmt.Errorf("%w: pipe: %v", ErrStart, err)
		return res
	}
	defer closeAll(outR, errR)

	g.cmd.Stdin = nil // /dev/null
	g.cmd.Stdout, g.cmd.Stderr = outW, errW
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	err = g.cmd.Start()
	closeAll(outW, errW) // the child holds its own copies
	if err != nil {
		res.Err = fmt.Errorf("%w: %v", ErrStart, err)
		return res
	}
	pgid := g.cmd.Process.Pid

	out := g.out
	if out == nil {
		out = func(contracts.Stream, string) {}
	}
	var mu sync.Mutex // one Output call at a time
	var readers sync.WaitGroup
	var readErr [2]error
	pipes := []*watchedPipe{{f: outR}, {f: errR}}
	for i, r := range pipes {
		stream := []contracts.Stream{contracts.StreamStdout, contracts.StreamStderr}[i]
		readers.Add(1)
		go func() {
			defer readers.Done()
			readErr[i] = readLines(r, contracts.MaxLogLineLen, func(text string) {
				mu.Lock()
				defer mu.Unlock()
				out(stream, text)
			})
		}()
	}
	waited := make(chan error, 1)
	go func() { waited <- g.cmd.Wait() }()

	var timeout <-chan time.Time
	if g.timeout > 0 {
		t := time.NewTimer(g.timeout)
		defer t.Stop()
		timeout = t.C
	}
	var waitErr error
	exited := false
	select {
	case waitErr = <-waited:
		exited = true
	case <-ctx.Done():
		res.Canceled = true
	case <-timeout:
		res.TimedOut = true
	}
	if exited {
		res.Duration = time.Since(start)
		g.stopGroup(pgid, nil) // leftovers of a script that ended
	} else {
		waitErr = g.stopGroup(pgid, waited)
		res.Duration = time.Since(start)
	}

	g.drain(&readers, pipes)
	for _, e := range readErr {
		if e != nil && res.Err == nil {
			res.Err = fmt.Errorf("executor: read output: %w", e)
		}
	}
	g.setExit(&res, waitErr)
	return res
}

// stopGroup sends SIGTERM to the group, waits until it is gone (and, when
// waited is set, the leader's Wait returned) or the grace period passed,
// then sends SIGKILL. It returns the leader's Wait error when waited is set.
func (g *groupRun) stopGroup(pgid int, waited <-chan error) error {
	if waited == nil && !groupAlive(pgid) {
		return nil
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	if g.onTerminate != nil {
		g.onTerminate()
	}
	grace := time.NewTimer(g.opts.grace)
	defer grace.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var waitErr error
	leaderDone := waited == nil
wait:
	for !leaderDone || groupAlive(pgid) {
		select {
		case waitErr = <-waited:
			leaderDone, waited = true, nil
		case <-tick.C:
		case <-grace.C:
			break wait
		}
	}
	if leaderDone && !groupAlive(pgid) {
		return waitErr
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if g.onKill != nil {
		g.onKill()
	}
	if !leaderDone {
		waitErr = <-waited
	}
	return waitErr
}

func (g *groupRun) setExit(res *Result, waitErr error) {
	st := g.cmd.ProcessState
	if st == nil {
		if res.Err == nil {
			res.Err = fmt.Errorf("executor: wait: %w", waitErr)
		}
		return
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = ws.Signal()
		return
	}
	code := st.ExitCode()
	res.ExitCode = &code
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) && res.Err == nil {
		res.Err = fmt.Errorf("executor: wait: %w", waitErr)
	}
}

// groupAlive reports whether process group pgid has a live member. Zombies
// do not count: they run nothing, and where PID 1 does not reap orphans
// (some containers) they would otherwise keep a killed group "alive" until
// the grace period ends. Without /proc, any member counts.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	return len(liveMembers(pgid)) > 0
}

// liveMembers lists the non-zombie processes of group pgid from /proc;
// when /proc cannot be read it returns {pgid}, assuming a live member.
func liveMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pgid}
	}
	var live []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 3 {
			continue
		}
		if pg, err := strconv.Atoi(string(f[2])); err == nil && pg == pgid && string(f[0]) != "Z" && string(f[0]) != "X" {
			live = append(live, pid)
		}
	}
	return live
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// watchedPipe is a pipe's read end that tells how long its current Read has
// been blocked.
type watchedPipe struct {
	f         *os.File
	readSince atomic.Int64 // UnixNano when the current Read began, 0 outside Read
}

func (w *watchedPipe) Read(p []byte) (int, error) {
	w.readSince.Store(time.Now().UnixNano())
	defer w.readSince.Store(0)
	return w.f.Read(p)
}

// drain waits for the readers, once the process group is gone. A reader
// blocked in Read for longer than the drain bound is waiting on a pipe that
// a process outside the group holds open: its pipe is closed, which ends it.
// A reader busy in Output is never cut, so a slow consumer loses nothing.
func (g *groupRun) drain(readers *sync.WaitGroup, pipes []*watchedPipe) {
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	tick := time.NewTicker(g.opts.drain / 4)
	defer tick.Stop()
	for {
		select {
		case <-drained:
			return
		case now := <-tick.C:
			for _, p := range pipes {
				if t := p.readSince.Load(); t != 0 && now.Sub(time.Unix(0, t)) > g.opts.drain {
					_ = p.f.Close() // unblocks the Read (pipes are non-blocking files)
				}
			}
		}
	}
}
