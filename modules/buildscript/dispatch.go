package buildscript

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/buildscript/pipeline"
)

// runner is a runner the scheduler has heard from.
type runner struct {
	id       string
	capacity int
	labels   map[string]string
	executor contracts.Executor
	lastSeen time.Time
}

// live reports whether the runner was heard from within the lease time.
func (r *runner) live(now time.Time, lease time.Duration) bool { return now.Sub(r.lastSeen) < lease }

// matches reports whether the runner has every label the job asks for.
func (r *runner) matches(labels map[string]string) bool {
	for k, v := range labels {
		if r.labels[k] != v {
			return false
		}
	}
	return true
}

func (s *Scheduler) hello(ctx context.Context, req contracts.RunnerHello) (contracts.Message, error) {
	s.mu.Lock()
	s.runners[req.RunnerID] = &runner{id: req.RunnerID, capacity: req.Capacity, labels: req.Labels,
		executor: req.Executor, lastSeen: time.Now()}
	s.mu.Unlock()
	s.log.Info().Str("runner", req.RunnerID).Int("capacity", req.Capacity).Any("labels", req.Labels).
		Str("executor", string(req.Executor)).Msg("runner connected")
	return contracts.Welcome{LeaseMs: s.o.LeaseTimeout.Milliseconds(), HeartbeatMs: s.o.heartbeat().Milliseconds()}, nil
}

// pick is one job taken from the queue for a runner.
type pick struct {
	j       *job
	lease   contracts.ID
	attempt int
}

// requestWork hands up to req.Free queued jobs that match the runner's
// labels, waiting up to req.WaitMs for some. Each is recorded running
// with its lease before the runner hears of it.
func (s *Scheduler) requestWork(ctx context.Context, req contracts.RequestWork) (contracts.Message, error) {
	// The runner waits wait_ms (and some slack) from when it asked: the
	// time spent waiting for recovery counts, or work could be handed to a
	// request its runner has given up on (the job would then wait for its
	// lease to lapse).
	wait := time.NewTimer(time.Duration(req.WaitMs) * time.Millisecond)
	defer wait.Stop()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	var owner *runner // the runner as this request found it
	for {
		picks, wake, lost, err := s.take(req, &owner)
		if err == errStaleRequest {
			return contracts.Work{Assignments: []contracts.Assignment{}}, nil
		}
		if err != nil {
			return nil, err
		}
		if len(lost) > 0 {
			return contracts.Work{Assignments: lost}, nil
		}
		if len(picks) > 0 {
			work := s.record(ctx, req.RunnerID, picks)
			if ctx.Err() != nil {
				s.abandon(work)
				return nil, contracts.NewError(contracts.CodeUnavailable, "the request ended while its work was recorded")
			}
			if len(work.Assignments) > 0 {
				return work, nil
			}
			continue // every pick lost its job meanwhile: look again
		}
		select {
		case <-wake:
		case <-wait.C:
			return contracts.Work{Assignments: []contracts.Assignment{}}, nil
		case <-ctx.Done():
			return contracts.Work{Assignments: []contracts.Assignment{}}, nil
		case <-s.ctx.Done():
			return nil, contracts.NewError(contracts.CodeUnavailable, "the scheduler is stopping")
		}
	}
}

// errStaleRequest: the runner said hello again since the request came (it
// restarted, or was forgotten and came back); the request is its earlier
// self's, which may be dead, and gets no work.
var errStaleRequest = errors.New("a request from before the runner's latest hello")

// take removes up to req.Free matching jobs from the queue and leases them,
// or returns the runner's lost assignments, which go first. *owner is the
// runner as the request first found it (set by the first call).
func (s *Scheduler) take(req contracts.RequestWork, owner **runner) ([]pick, chan struct{}, []contracts.Assignment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runners[req.RunnerID]
	if r == nil {
		return nil, nil, nil, contracts.NewError(contracts.CodeNotFound, fmt.Sprintf("runner %q is unknown: send dispatch.hello", req.RunnerID))
	}
	if *owner == nil {
		*owner = r
	} else if *owner != r {
		return nil, nil, nil, errStaleRequest
	}
	now := time.Now()
	r.lastSeen = now
	if lost := s.lostAssignments(r, req.Held, req.Free, now); len(lost) > 0 {
		return nil, nil, lost, nil
	}
	var picks []pick
	s.queue = slices.DeleteFunc(s.queue, func(j *job) bool {
		if j.b.done || j.b.cancel != "" || j.status != contracts.JobStatusQueued {
			return true
		}
		if len(picks) == req.Free || !r.matches(j.def.Labels) {
			return false
		}
		lease := contracts.NewID(now)
		j.lease, j.runner, j.deadline, j.starting = lease, r.id, now.Add(s.o.LeaseTimeout), true
		s.leases[lease] = j
		picks = append(picks, pick{j: j, lease: lease, attempt: j.attempt})
		return true
	})
	return picks, s.wake, nil, nil
}

// lostAssignments returns again, with their leases and attempts, up to
// free jobs recorded running on r that r does not hold: the answer that
// carried them was lost (a scheduler restart, or a runner that stopped
// waiting for it). A runner that did start one hands it back rather than
// run the attempt twice. s.mu is held.
func (s *Scheduler) lostAssignments(r *runner, held []contracts.ID, free int, now time.Time) []contracts.Assignment {
	var out []contracts.Assignment
	for id, j := range s.leases {
		if len(out) == free {
			break
		}
		if j.runner != r.id || j.starting || j.reporting || !now.Before(j.deadline) || slices.Contains(held, id) {
			continue
		}
		j.deadline = now.Add(s.o.LeaseTimeout)
		s.log.Info().Stringer("job", j.ref()).Str("runner", r.id).Int("attempt", j.attempt).
			Msg("runner does not hold its assignment: sending it again")
		out = append(out, s.assignment(j, pick{j: j, lease: id, attempt: j.attempt}))
	}
	return out
}

// record marks the picked jobs running in the data store and returns the
// assignments of those it could.
func (s *Scheduler) record(ctx context.Context, runnerID string, picks []pick) contracts.Work {
	work := contracts.Work{Assignments: make([]contracts.Assignment, len(picks))}
	ok := make([]bool, len(picks))
	var wg sync.WaitGroup
	for i, p := range picks {
		wg.Go(func() {
			now := time.Now().UTC()
			_, err := s.call(ctx, contracts.UpdateJob{Job: p.j.ref(), Status: contracts.JobStatusRunning, Attempt: p.attempt,
				RunnerID: runnerID, LeaseID: p.lease, Time: now})
			s.mu.Lock()
			defer s.mu.Unlock()
			j := p.j
			j.starting = false
			switch {
			case err == nil:
				j.status = contracts.JobStatusRunning
				if j.b.cancel != "" {
					j.cancel = j.b.cancel
				}
				work.Assignments[i] = s.assignment(j, p)
				ok[i] = true
			case contracts.CodeOf(err) == contracts.CodeConflict || j.b.done:
				// The job ended meanwhile (its build was canceled).
				delete(s.leases, p.lease)
				j.lease = contracts.ID{}
				b := j.b
				s.post(b, func(ctx context.Context) { s.refresh(ctx, b); s.advance(ctx, b) })
			default:
				s.log.Warn().Err(err).Stringer("job", j.ref()).Msg("recording a job running; it goes back to the queue")
				delete(s.leases, p.lease)
				j.lease = contracts.ID{}
				s.queue = append([]*job{j}, s.queue...)
			}
		})
	}
	wg.Wait()
	out := work.Assignments[:0]
	for i, a := range work.Assignments {
		if ok[i] {
			out = append(out, a)
		}
	}
	work.Assignments = out
	return work
}

// abandon lets the leases of work its runner will never hear of lapse at
// the next tick, so their jobs run again soon rather than after a whole
// lease.
func (s *Scheduler) abandon(work contracts.Work) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range work.Assignments {
		if j := s.leases[a.LeaseID]; j != nil {
			j.deadline = time.Now()
		}
	}
}

// assignment describes a leased job for its runner. s.mu is held.
func (s *Scheduler) assignment(j *job, p pick) contracts.Assignment {
	b := j.b
	spec, _ := b.pipe.Spec(j.id)
	spec.Job, spec.URL, spec.Ref, spec.Commit = j.ref(), b.url, b.ref, b.commit
	spec.Env = withParams(spec.Env, b.params, j.def.Env, spec.SecretEnv)
	return contracts.Assignment{LeaseID: p.lease, Deadline: j.deadline.UTC(), Attempt: p.attempt,
		MaxAttempts: j.maxAttempts + j.extra, Job: spec}
}

// withParams adds the build's params to a job's environment: they
// override the pipeline's env but not the job's own, nor its secrets.
func withParams(env, params map[string]string, jobEnv map[string]pipeline.EnvValue, secrets map[string]string) map[string]string {
	if len(params) == 0 {
		return env
	}
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range params {
		_, secret := secrets[k]
		if _, own := jobEnv[k]; secret || own {
			continue
		}
		out[k] = v
	}
	return out
}

// renew extends a lease and says whether to cancel the job.
func (s *Scheduler) renew(ctx context.Context, req contracts.RenewLease) (contracts.Message, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.leases[req.LeaseID]
	if j == nil || j.runner != req.RunnerID {
		return nil, contracts.NewError(contracts.CodeConflict, fmt.Sprintf("lease %s is not held by runner %s: it ended or was lost", req.LeaseID, req.RunnerID))
	}
	now := time.Now()
	j.deadline = now.Add(s.o.LeaseTimeout)
	if r := s.runners[req.RunnerID]; r != nil {
		r.lastSeen = now
	}
	return contracts.Lease{LeaseID: req.LeaseID, Deadline: j.deadline.UTC(), Cancel: j.cancel != "", Reason: j.cancel}, nil
}

// result records how an attempt ended: the job's final status, or a new
// attempt when it failed with retries left or was handed back.
func (s *Scheduler) result(ctx context.Context, req contracts.JobResult) (contracts.Message, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.ended.Has(req.LeaseID) {
		s.mu.Unlock()
		return contracts.OK{}, nil // a repeat
	}
	j := s.leases[req.LeaseID]
	switch {
	case j == nil || j.runner != req.RunnerID || j.ref() != req.Job || j.attempt != req.Attempt:
		s.mu.Unlock()
		return nil, contracts.NewError(contracts.CodeConflict, fmt.Sprintf("lease %s of %s attempt %d is not current: the job was given to another runner or ended", req.LeaseID, req.Job, req.Attempt))
	case j.reporting:
		s.mu.Unlock()
		return nil, contracts.NewError(contracts.CodeUnavailable, "this result is being recorded; send it again")
	}
	j.reporting = true
	again := j.cancel == "" && j.b.cancel == "" &&
		(req.Status == contracts.JobStatusFailure && req.Attempt < j.maxAttempts+j.extra || req.Requeue)
	if req.Requeue {
		j.extra++
	}
	s.mu.Unlock()

	upd := contracts.UpdateJob{Job: req.Job, Status: req.Status, Attempt: req.Attempt, RunnerID: req.RunnerID,
		ExitCode: req.ExitCode, Reason: req.Reason, Time: req.FinishedAt}
	if again {
		upd = contracts.UpdateJob{Job: req.Job, Status: contracts.JobStatusQueued, Attempt: req.Attempt + 1, Time: time.Now().UTC()}
	} else if req.Status == contracts.JobStatusError && req.Requeue {
		upd.Status, upd.Reason = contracts.JobStatusCanceled, firstNonEmpty(j.cancel, "canceled")
	}
	_, err := s.call(ctx, upd)

	s.mu.Lock()
	defer s.mu.Unlock()
	j.reporting = false
	if err != nil && contracts.CodeOf(err) != contracts.CodeConflict {
		if req.Requeue {
			j.extra--
		}
		return nil, err
	}
	delete(s.leases, req.LeaseID)
	s.ended.Add(req.LeaseID)
	j.lease, j.runner = contracts.ID{}, ""
	if err != nil { // the data store refused: the job ended otherwise (its build finished)
		j.status = contracts.JobStatusCanceled
		s.post(j.b, func(ctx context.Context) { s.advance(ctx, j.b) })
		return contracts.OK{}, nil
	}
	if again {
		j.status, j.attempt, j.reason, j.queuedAt, j.cancel = contracts.JobStatusQueued, req.Attempt+1, "", time.Now(), ""
		s.queue = append(s.queue, j)
		s.wakeRunners()
		return contracts.OK{}, nil
	}
	j.status = upd.Status
	j.satisfied = upd.Status == contracts.JobStatusSuccess
	s.post(j.b, func(ctx context.Context) { s.jobEnded(ctx, j) })
	return contracts.OK{}, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// expireLeases takes back the jobs whose runners stopped renewing.
func (s *Scheduler) expireLeases() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, j := range s.leases {
		if j.starting || j.reporting || now.Before(j.deadline) {
			continue
		}
		delete(s.leases, id)
		// The runner is gone: forget it, so that a request it left waiting
		// gets no work (a live runner that hears not_found says hello again).
		delete(s.runners, j.runner)
		s.log.Warn().Stringer("job", j.ref()).Str("runner", j.runner).Int("attempt", j.attempt).Msg("lease expired: the runner is gone")
		runnerID, attempt := j.runner, j.attempt
		j.lease, j.runner = contracts.ID{}, ""
		j.extra++
		s.post(j.b, func(ctx context.Context) { s.leaseLost(ctx, j, runnerID, attempt) })
	}
	for id, r := range s.runners {
		if now.Sub(r.lastSeen) > 10*s.o.LeaseTimeout {
			delete(s.runners, id)
		}
	}
}

// leaseLost runs a job again after its runner vanished, or ends it.
func (s *Scheduler) leaseLost(ctx context.Context, j *job, runnerID string, attempt int) {
	s.mu.Lock()
	canceled := j.cancel != "" || j.b.cancel != ""
	lost := j.extra
	s.mu.Unlock()
	switch {
	case canceled:
		s.endJob(ctx, j, contracts.JobStatusCanceled, "canceled; runner "+runnerID+" stopped answering")
	case lost > s.o.MaxLostLeases:
		s.endJob(ctx, j, contracts.JobStatusError, fmt.Sprintf("lost its runner %d times (last: %s)", lost, runnerID))
	default:
		s.queueJob(ctx, j, attempt+1)
		return
	}
	s.advance(ctx, j.b)
}

// updateQueuedReasons records why jobs wait for a runner: no runner with
// their labels, or all busy.
func (s *Scheduler) updateQueuedReasons(ctx context.Context) {
	type upd struct {
		j      *job
		reason string
	}
	var upds []upd
	now := time.Now()
	s.mu.Lock()
	for _, j := range s.queue {
		if now.Sub(j.queuedAt) < queuedReasonAfter || j.status != contracts.JobStatusQueued {
			continue
		}
		matching := 0
		for _, r := range s.runners {
			if r.live(now, s.o.LeaseTimeout) && r.matches(j.def.Labels) {
				matching++
			}
		}
		var reason string
		switch {
		case matching > 0:
			reason = fmt.Sprintf("all runners busy (%d with its labels)", matching)
		case len(j.def.Labels) > 0:
			reason = "no runner with labels " + formatLabels(j.def.Labels)
		default:
			reason = "no runner connected"
		}
		if reason != j.reason {
			j.reason = reason
			upds = append(upds, upd{j, reason})
		}
	}
	s.mu.Unlock()
	for _, u := range upds {
		_, err := s.call(ctx, contracts.UpdateJob{Job: u.j.ref(), Status: contracts.JobStatusPending, Reason: u.reason, Time: time.Now().UTC()})
		if err != nil && contracts.CodeOf(err) != contracts.CodeConflict && ctx.Err() == nil {
			s.log.Warn().Err(err).Stringer("job", u.j.ref()).Msg("recording why a job waits")
		}
	}
}

// formatLabels writes labels as {k: v, ...}, sorted by key.
func formatLabels(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + l[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// stats reports the queue and runners, for metrics.
func (s *Scheduler) stats(context.Context, contracts.GetStats) (contracts.Message, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := contracts.Stats{Queued: len(s.queue), Running: len(s.leases), Builds: len(s.builds)}
	for _, r := range s.runners {
		if r.live(now, s.o.LeaseTimeout) {
			st.Runners++
		}
	}
	return st, nil
}
