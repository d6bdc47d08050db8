//go:build unix

package jobs

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Retry bounds: after a failed request the runner waits backoffMin,
// doubling up to backoffMax.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 2 * time.Second
)

// Request timeouts: a short request (hello, renew, report) waits up to
// callTimeout; a long poll waits its wait_ms plus pollSlack.
const (
	callTimeout = 10 * time.Second
	pollSlack   = 10 * time.Second
)

// backoff is a bounded exponential delay.
type backoff struct{ d time.Duration }

// wait sleeps for the next delay, or until ctx ends (false).
func (b *backoff) wait(ctx context.Context) bool {
	b.d = min(max(2*b.d, backoffMin), backoffMax)
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *backoff) reset() { b.d = 0 }

// pollLoop says hello, then asks for work whenever a slot is free, until
// pollCtx ends.
func (r *Runner) pollLoop() {
	defer r.loops.Done()
	ctx := r.pollCtx
	var bo backoff
	welcomed := false
	for ctx.Err() == nil {
		if !welcomed {
			if err := r.hello(ctx); err != nil {
				r.logCallErr(err, "hello")
				bo.wait(ctx)
				continue
			}
			welcomed = true
			bo.reset()
		}
		free := r.waitFree(ctx)
		if free == 0 {
			continue // ctx ended
		}
		work, err := r.requestWork(ctx, free)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if contracts.CodeOf(err) == contracts.CodeNotFound {
				welcomed = false // the scheduler forgot the runner
			}
			r.logCallErr(err, "request_work")
			bo.wait(ctx)
			continue
		}
		bo.reset()
		for _, a := range work.Assignments {
			r.accept(a)
		}
	}
}

// logCallErr logs a failed dispatch call: quietly while the scheduler is
// not reachable (it may be starting), as a warning otherwise.
func (r *Runner) logCallErr(err error, op string) {
	if contracts.CodeOf(err) == contracts.CodeUnavailable {
		r.log.Debug().Err(err).Str("op", op).Msg("scheduler unavailable; retrying")
		return
	}
	r.log.Warn().Err(err).Str("op", op).Msg("dispatch request failed; retrying")
}

// hello introduces the runner and keeps the scheduler's timing.
func (r *Runner) hello(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	w, err := rpc.Call[contracts.Welcome](ctx, r.tr, contracts.RunnerHello{
		RunnerID: r.id, Capacity: r.opts.Capacity, Labels: r.opts.Labels,
		Executor: contracts.Executor(r.opts.Executor),
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.welcome = w
	r.mu.Unlock()
	r.log.Debug().Int64("lease_ms", w.LeaseMs).Int64("heartbeat_ms", w.HeartbeatMs).Msg("scheduler welcomed the runner")
	return nil
}

// requestWork long-polls for up to free assignments.
func (r *Runner) requestWork(ctx context.Context, free int) (contracts.Work, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.opts.WaitMs)*time.Millisecond+pollSlack)
	defer cancel()
	r.mu.Lock()
	held := slices.Collect(maps.Keys(r.running))
	r.mu.Unlock()
	return rpc.Call[contracts.Work](ctx, r.tr, contracts.RequestWork{RunnerID: r.id, Free: free, WaitMs: r.opts.WaitMs, Held: held})
}

// waitFree waits until a slot is free and returns how many are, or 0 when
// ctx ended.
func (r *Runner) waitFree(ctx context.Context) int {
	for {
		r.mu.Lock()
		free := r.opts.Capacity - len(r.running)
		r.mu.Unlock()
		if free > 0 {
			return free
		}
		select {
		case <-r.freed:
		case <-ctx.Done():
			return 0
		}
	}
}

// accept starts a job for a, or hands it back when the runner is stopping
// or full (the scheduler sent more than the free slots).
func (r *Runner) accept(a contracts.Assignment) {
	r.mu.Lock()
	var why string
	switch {
	case r.running[a.LeaseID] != nil:
		r.mu.Unlock()
		return // already running: a repeated assignment
	case r.state != stateStarted:
		why = "runner " + r.id + " stopped before the job finished; handed back"
	case len(r.running) >= r.opts.Capacity:
		why = "runner " + r.id + " is full; handed back"
	case r.started.Has(a.LeaseID):
		// Sent again after this runner started it (and lost it, or was
		// killed while running it): running it twice as one attempt would
		// hide the first run, so the next attempt runs instead.
		why = "runner " + r.id + " already started this attempt; handed back"
	}
	if why != "" {
		r.mu.Unlock()
		r.log.Warn().Str("job", a.Job.Job.String()).Msg(why)
		now := time.Now().UTC()
		r.report(r.ctx, contracts.JobResult{
			RunnerID: r.id, LeaseID: a.LeaseID, Job: a.Job.Job, Attempt: a.Attempt,
			Status: contracts.JobStatusError, Reason: why, StartedAt: now, FinishedAt: now, Requeue: true,
		})
		return
	}
	j := r.newJob(a)
	r.running[a.LeaseID] = j
	r.started.Add(a.LeaseID)
	r.jobs.Add(1)
	r.mu.Unlock()
	go j.run()
}

// release forgets a finished job and wakes the poll loop.
func (r *Runner) release(j *job) {
	r.mu.Lock()
	delete(r.running, j.a.LeaseID)
	r.mu.Unlock()
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

// report sends a result until the scheduler answers it, retrying while it
// is unavailable, until ctx ends. A conflict means the lease was lost: the
// result is dropped.
func (r *Runner) report(ctx context.Context, res contracts.JobResult) {
	var bo backoff
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := rpc.Call[contracts.OK](cctx, r.tr, res, transport.Idempotent())
		cancel()
		switch code := contracts.CodeOf(err); {
		case err == nil:
			return
		case code == contracts.CodeConflict:
			r.log.Info().Str("job", res.Job.String()).Msg("result not taken: the lease was lost")
			return
		case code != contracts.CodeUnavailable:
			r.log.Error().Err(err).Str("job", res.Job.String()).Msg("result refused")
			return
		}
		if ctx.Err() != nil || !bo.wait(ctx) {
			r.log.Warn().Str("job", res.Job.String()).Msg("result not reported: runner stopping")
			return
		}
	}
}

// listenCancels stops jobs named by dispatch.cancel publications on the
// runner's cancel topic, until the subscription closes.
func (r *Runner) listenCancels() {
	defer r.loops.Done()
	topic := contracts.CancelTopic(r.id)
	for {
		msg, err := r.sub.Next(r.ctx)
		if errors.Is(err, transport.ErrMissed) {
			continue // the next renewal carries the cancel anyway
		}
		if err != nil {
			return
		}
		if msg.Topic != topic {
			continue // a runner whose id starts with ours
		}
		var c contracts.CancelJob
		env, err := contracts.Unmarshal(msg.Data)
		if err == nil {
			err = env.Decode(&c)
		}
		if err != nil || c.RunnerID != r.id {
			r.log.Warn().Err(err).Msg("ignoring a bad cancel publication")
			continue
		}
		r.mu.Lock()
		j := r.running[c.LeaseID]
		r.mu.Unlock()
		if j != nil {
			j.stop(canceled(c.Reason))
		}
	}
}
