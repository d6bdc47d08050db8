package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// How `build trigger --wait` watches a build.
const (
	waitPoll     = 500 * time.Millisecond // between reads of the build
	waitGrace    = 30 * time.Second       // for logs to end once the build has
	waitAttempts = 10                     // failed reads of the build in a row before giving up
)

// buildWaiter follows a build until it ends: it reads the build every
// waitPoll and follows the log of each job that has started, every line
// prefixed with "[JOB] ".
type buildWaiter struct {
	c      *apiClient
	repo   string
	number int64
	logs   bool // follow the jobs' logs; false: only wait

	outMu    sync.Mutex // one line at a time on c.out
	mu       sync.Mutex
	followed map[string]bool // jobs whose log is (being) followed
	noted    map[string]bool // blocked jobs already told about
	wg       sync.WaitGroup
}

func newBuildWaiter(c *apiClient, repo string, number int64, logs bool) *buildWaiter {
	return &buildWaiter{c: c, repo: repo, number: number, logs: logs, followed: map[string]bool{}, noted: map[string]bool{}}
}

// wait returns the finished build, and its JSON as the API sent it, once
// the build is over and its logs have ended (or waitGrace has passed).
func (w *buildWaiter) wait(ctx context.Context) (buildJSON, []byte, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer w.wg.Wait()
	defer cancel()
	b, raw, err := w.untilOver(ctx, fctx)
	if err != nil {
		return b, raw, err
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	grace := time.NewTimer(waitGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		fmt.Fprintf(w.c.errOut, "zeroci: build %s #%d is over but some logs did not end; stopped following them\n", w.repo, w.number)
	case <-ctx.Done():
		return b, raw, ctx.Err()
	}
	return b, raw, nil
}

// untilOver reads the build until its status is terminal, starting log
// followers under fctx as its jobs start.
func (w *buildWaiter) untilOver(ctx, fctx context.Context) (buildJSON, []byte, error) {
	path := buildPath(w.repo, w.number)
	failures := 0
	ticker := time.NewTicker(waitPoll)
	defer ticker.Stop()
	for {
		var b buildJSON
		raw, err := w.c.callJSON(ctx, http.MethodGet, path, nil, &b)
		var ae *apiError
		switch {
		case err == nil:
			failures = 0
			w.startFollowers(fctx, b)
			if contracts.BuildStatus(b.Status).Terminal() {
				return b, raw, nil
			}
		case ctx.Err() != nil:
			return b, nil, ctx.Err()
		case errors.As(err, &ae) && ae.Status < 500:
			return b, nil, err
		default:
			failures++
			if failures >= waitAttempts {
				return b, nil, err
			}
		}
		select {
		case <-ctx.Done():
			return b, nil, ctx.Err()
		case <-ticker.C:
		}
	}
}

// startFollowers follows the log of every job of b that has started and
// is not followed yet, and tells once about each blocked job.
func (w *buildWaiter) startFollowers(ctx context.Context, b buildJSON) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, j := range b.Jobs {
		switch contracts.JobStatus(j.Status) {
		case contracts.JobStatusBlocked:
			if !w.noted[j.ID] {
				w.noted[j.ID] = true
				fmt.Fprintf(w.c.errOut, "zeroci: job %s waits for approval: zeroci build approve %s %d %s\n", j.ID, w.repo, w.number, j.ID)
			}
		case contracts.JobStatusRunning, contracts.JobStatusSuccess, contracts.JobStatusFailure,
			contracts.JobStatusCanceled, contracts.JobStatusError:
			if !w.logs || w.followed[j.ID] {
				continue
			}
			w.followed[j.ID] = true
			w.wg.Add(1)
			go w.follow(ctx, j.ID)
		}
	}
}

// follow prints one job's log. A log that does not exist (yet) is tried
// again at the next read of the build; other errors are reported on
// stderr, and do not change the command's result (the build's does).
func (w *buildWaiter) follow(ctx context.Context, job string) {
	defer w.wg.Done()
	path := buildPath(w.repo, w.number, "jobs", job, "log")
	printed := false
	err := w.c.followLog(ctx, path, func(text string) error {
		printed = true
		w.outMu.Lock()
		defer w.outMu.Unlock()
		_, err := fmt.Fprintf(w.c.out, "[%s] %s\n", job, text)
		return err
	})
	var ae *apiError
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound && !printed:
		w.mu.Lock()
		delete(w.followed, job)
		w.mu.Unlock()
	default:
		fmt.Fprintf(w.c.errOut, "zeroci: log of job %s: %v\n", job, err)
	}
}
