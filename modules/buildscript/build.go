package buildscript

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gitrepo"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/buildscript/pipeline"
	"github.com/zeroci/zeroci/modules/rpc"
)

type buildKey struct {
	repo   string
	number int64
}

func (k buildKey) String() string { return fmt.Sprintf("%s#%d", k.repo, k.number) }

// build is one unfinished build. Its fields other than the action queue
// are guarded by Scheduler.mu once the build is planned; its actions run
// one at a time on its own goroutine (post).
type build struct {
	key     buildKey
	ref     string
	commit  string // full id once planned
	url     string
	event   contracts.TriggerKind
	params  map[string]string
	repo    *gitrepo.Repo
	pipe    *pipeline.Pipeline
	jobs    []*job // in pipeline order
	byID    map[string]*job
	tree    []gitrepo.Entry // the commit's files, read when a job has inputs
	sourced bool            // the source archive is in the blob store
	cancel  string          // why the build is being canceled; "" if it is not
	planned bool
	done    bool // final, or dropped

	qmu     sync.Mutex
	actions []func(context.Context)
	running bool
}

// job is one job of a build. Guarded by Scheduler.mu.
type job struct {
	b           *build
	id          string
	def         *pipeline.Job
	status      contracts.JobStatus
	attempt     int
	extra       int // attempts that did not count against retries (lost runners, hand-backs)
	lease       contracts.ID
	runner      string
	deadline    time.Time
	starting    bool      // the lease is being recorded
	reporting   bool      // a result is being recorded
	cancel      string    // set: stop the running attempt, with this reason
	satisfied   bool      // ended in a way that lets dependents run (success, or unchanged inputs)
	inKey       string    // input key, for jobs with inputs
	reason      string    // the pending reason last recorded
	queuedAt    time.Time // when it was queued: its reason says why it waits after queuedReasonAfter
	maxAttempts int       // 1 + the job's retries
}

func (j *job) ref() contracts.JobRef {
	return contracts.JobRef{Repo: j.b.key.repo, Build: j.b.key.number, Job: j.id}
}

// post queues an action on b's goroutine.
func (s *Scheduler) post(b *build, f func(context.Context)) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	b.actions = append(b.actions, f)
	if b.running {
		return
	}
	b.running = true
	s.wg.Add(1)
	go s.drain(b)
}

func (s *Scheduler) drain(b *build) {
	defer s.wg.Done()
	for {
		b.qmu.Lock()
		if len(b.actions) == 0 || s.ctx.Err() != nil {
			b.actions, b.running = nil, false
			b.qmu.Unlock()
			return
		}
		f := b.actions[0]
		b.actions = b.actions[1:]
		b.qmu.Unlock()
		f(s.ctx)
	}
}

// failBuild ends b with status error and msg, before or outside its jobs.
func (s *Scheduler) failBuild(ctx context.Context, b *build, msg string) {
	if len(msg) > contracts.MaxBuildError {
		msg = msg[:contracts.MaxBuildError-3] + "..."
	}
	_, err := s.call(ctx, contracts.UpdateBuild{Repo: b.key.repo, Number: b.key.number, Status: contracts.BuildStatusError, Error: msg})
	if err != nil && contracts.CodeOf(err) != contracts.CodeConflict && ctx.Err() == nil {
		s.log.Error().Err(err).Stringer("build", b.key).Msg("recording the build's error")
	}
	s.drop(b)
}

// drop forgets b.
func (s *Scheduler) drop(b *build) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.done = true
	delete(s.builds, b.key)
	s.queue = slices.DeleteFunc(s.queue, func(j *job) bool { return j.b == b })
}

// call sends a data store command, retrying while the data store is
// unavailable (it waits for the hub, or is restarting) until ctx ends.
func (s *Scheduler) call(ctx context.Context, req contracts.Message) (contracts.Build, error) {
	delay := 20 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		b, err := rpc.Call[contracts.Build](cctx, s.tr, req)
		cancel()
		if err == nil || contracts.CodeOf(err) != contracts.CodeUnavailable || ctx.Err() != nil {
			return b, err
		}
		sleep(ctx, delay)
		delay = min(2*delay, 2*time.Second)
	}
}

// advance moves b's graph on: skips jobs whose dependencies did not
// succeed, queues (or input-skips) jobs whose dependencies did, updates
// pending reasons, and ends the build when every job has ended.
func (s *Scheduler) advance(ctx context.Context, b *build) {
	for ctx.Err() == nil {
		type skipAct struct {
			j      *job
			reason string
		}
		var skips []skipAct
		var ready []*job
		type reasonAct struct {
			j      *job
			reason string
		}
		var reasons []reasonAct
		s.mu.Lock()
		if b.done || !b.planned {
			s.mu.Unlock()
			return
		}
		for _, j := range b.jobs {
			if j.status != contracts.JobStatusPending && j.status != contracts.JobStatusBlocked {
				continue
			}
			var waiting []string
			bad := ""
			for _, dep := range j.def.DependsOn {
				d := b.byID[dep]
				switch {
				case d == nil: // not planned (zeroci run --job keeps dependencies, so this is not reached)
				case !d.status.Terminal():
					waiting = append(waiting, dep)
				case !d.satisfied && bad == "":
					bad = dep
				}
			}
			switch {
			case bad != "":
				skips = append(skips, skipAct{j, depReason(b.byID[bad])})
			case j.status == contracts.JobStatusBlocked:
			case b.cancel != "":
			case len(waiting) == 0:
				ready = append(ready, j)
			default:
				if r := "waiting for " + strings.Join(waiting, ", "); r != j.reason {
					reasons = append(reasons, reasonAct{j, r})
				}
			}
		}
		final := true
		for _, j := range b.jobs {
			final = final && j.status.Terminal()
		}
		s.mu.Unlock()

		for _, a := range skips {
			s.skip(ctx, a.j, a.reason, false)
		}
		for _, j := range ready {
			s.start(ctx, j)
		}
		for _, a := range reasons {
			s.setReason(ctx, a.j, a.reason)
		}
		if len(skips) > 0 || len(ready) > 0 {
			continue // a skip or an input-skip may make more jobs ready
		}
		if final {
			s.finish(ctx, b)
		}
		return
	}
}

// anyActive reports whether a job of b is leased or queued. s.mu is held.
func (s *Scheduler) anyActive(b *build) bool {
	for _, j := range b.jobs {
		if j.status == contracts.JobStatusRunning || j.status == contracts.JobStatusQueued {
			return true
		}
	}
	return false
}

func depReason(d *job) string {
	if d.status == contracts.JobStatusSkipped {
		return fmt.Sprintf("dependency %s was skipped", d.id)
	}
	return fmt.Sprintf("dependency %s did not succeed (%s)", d.id, d.status)
}

// unchangedPrefix starts the reason of a job skipped for unchanged inputs.
const unchangedPrefix = "unchanged since build "

// skip records j skipped. satisfied says whether dependents may run (an
// input-skip reuses the earlier run's outputs).
func (s *Scheduler) skip(ctx context.Context, j *job, reason string, satisfied bool) {
	_, err := s.call(ctx, contracts.UpdateJob{Job: j.ref(), Status: contracts.JobStatusSkipped, Reason: reason, Time: time.Now().UTC()})
	if err != nil && contracts.CodeOf(err) != contracts.CodeConflict && ctx.Err() == nil {
		s.log.Error().Err(err).Stringer("job", j.ref()).Msg("recording a skip")
		return
	}
	s.mu.Lock()
	j.status, j.satisfied = contracts.JobStatusSkipped, satisfied
	s.mu.Unlock()
}

// setReason records why a pending job waits.
func (s *Scheduler) setReason(ctx context.Context, j *job, reason string) {
	_, err := s.call(ctx, contracts.UpdateJob{Job: j.ref(), Status: contracts.JobStatusPending, Reason: reason, Time: time.Now().UTC()})
	if err != nil && contracts.CodeOf(err) != contracts.CodeConflict && ctx.Err() == nil {
		s.log.Warn().Err(err).Stringer("job", j.ref()).Msg("recording a pending reason")
		return
	}
	s.mu.Lock()
	j.reason = reason
	s.mu.Unlock()
}

// start queues a ready job, or skips it when its inputs are unchanged
// since a successful run.
func (s *Scheduler) start(ctx context.Context, j *job) {
	b := j.b
	if len(j.def.Inputs) > 0 {
		skipped, err := s.inputSkip(ctx, j)
		if err != nil {
			s.log.Warn().Err(err).Stringer("job", j.ref()).Msg("input key; running the job")
		}
		if skipped {
			return
		}
	}
	if !b.sourced {
		if err := s.ensureSource(ctx, b); err != nil {
			s.endJob(ctx, j, contracts.JobStatusError, "storing the source archive: "+err.Error())
			return
		}
		b.sourced = true
	}
	s.queueJob(ctx, j, j.attempt+1)
}

// queueJob records attempt of j queued and offers it to runners.
func (s *Scheduler) queueJob(ctx context.Context, j *job, attempt int) {
	_, err := s.call(ctx, contracts.UpdateJob{Job: j.ref(), Status: contracts.JobStatusQueued, Attempt: attempt, Time: time.Now().UTC()})
	if err != nil {
		if contracts.CodeOf(err) == contracts.CodeConflict {
			s.refresh(ctx, j.b) // the job ended otherwise: take the data store's word
		} else if ctx.Err() == nil {
			s.log.Error().Err(err).Stringer("job", j.ref()).Msg("queueing")
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j.status, j.attempt, j.reason, j.queuedAt = contracts.JobStatusQueued, attempt, "", time.Now()
	j.lease, j.runner, j.cancel = contracts.ID{}, "", ""
	if j.b.done || j.b.cancel != "" {
		return
	}
	s.queue = append(s.queue, j)
	s.wakeRunners()
}

// wakeRunners wakes the runners waiting for work. s.mu is held.
func (s *Scheduler) wakeRunners() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// endJob records j ended with status (not by a runner's result).
func (s *Scheduler) endJob(ctx context.Context, j *job, status contracts.JobStatus, reason string) {
	_, err := s.call(ctx, contracts.UpdateJob{Job: j.ref(), Status: status, Reason: reason, Time: time.Now().UTC()})
	if err != nil && contracts.CodeOf(err) != contracts.CodeConflict && ctx.Err() == nil {
		s.log.Error().Err(err).Stringer("job", j.ref()).Msg("recording the job's end")
		return
	}
	s.mu.Lock()
	j.status, j.satisfied = status, false
	s.mu.Unlock()
}

// ensureSource stores the archive of b's commit for the runners, once per
// commit.
func (s *Scheduler) ensureSource(ctx context.Context, b *build) error {
	key := contracts.SourceKey(b.key.repo, b.commit)
	if _, err := blobclient.Stat(ctx, s.tr, key); err == nil {
		return nil
	} else if contracts.CodeOf(err) != contracts.CodeNotFound {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(b.repo.Archive(ctx, b.commit, pw)) }()
	_, err := blobclient.Put(ctx, s.tr, key, "application/x-tar", pr)
	pr.CloseWithError(err) // stops the archive if the upload failed
	return err
}

// finish records b's final status once all its jobs ended.
func (s *Scheduler) finish(ctx context.Context, b *build) {
	s.mu.Lock()
	status := contracts.BuildStatusSuccess
	for _, j := range b.jobs {
		switch j.status {
		case contracts.JobStatusFailure:
			status = contracts.BuildStatusFailure
		case contracts.JobStatusError:
			if status == contracts.BuildStatusSuccess {
				status = contracts.BuildStatusError
			}
		case contracts.JobStatusCanceled:
			if status == contracts.BuildStatusSuccess {
				status = contracts.BuildStatusCanceled
			}
		}
	}
	if b.cancel != "" {
		status = contracts.BuildStatusCanceled
	}
	s.mu.Unlock()
	_, err := s.call(ctx, contracts.UpdateBuild{Repo: b.key.repo, Number: b.key.number, Status: status})
	switch {
	case err == nil:
		s.drop(b)
	case contracts.CodeOf(err) == contracts.CodeConflict:
		// Ended already (the data store canceled it), or the data store
		// still has a job running that this scheduler thinks ended: take
		// its word, and keep the build until it ends.
		s.refresh(ctx, b)
		if s.build(b.key) == b {
			s.log.Warn().Err(err).Stringer("build", b.key).Msg("the data store refused the build's end; waiting for its jobs")
		}
	case ctx.Err() == nil:
		s.log.Error().Err(err).Stringer("build", b.key).Msg("recording the build's end")
	}
}

// cancelBuild stops b: waiting jobs were canceled by the data store;
// running ones are told to stop, and the build ends when they report.
func (s *Scheduler) cancelBuild(ctx context.Context, b *build) {
	type stop struct {
		runner string
		msg    contracts.CancelJob
	}
	var stops []stop
	s.mu.Lock()
	if b.cancel == "" {
		b.cancel = "canceled"
	}
	s.queue = slices.DeleteFunc(s.queue, func(j *job) bool { return j.b == b })
	for _, j := range b.jobs {
		switch {
		case j.status == contracts.JobStatusQueued && j.starting:
			// Taken by a runner and being recorded running: the data store
			// may have it running already, so it is not over. record()
			// makes it running with this cancel, which its first renewal
			// carries to the runner.
			j.cancel = b.cancel
		case j.status == contracts.JobStatusPending, j.status == contracts.JobStatusBlocked, j.status == contracts.JobStatusQueued:
			j.status = contracts.JobStatusCanceled
		case j.status == contracts.JobStatusRunning:
			j.cancel = b.cancel
			if !j.lease.IsZero() && j.runner != "" {
				stops = append(stops, stop{j.runner, contracts.CancelJob{RunnerID: j.runner, LeaseID: j.lease, Job: j.ref(), Reason: b.cancel}})
			}
		}
	}
	s.mu.Unlock()
	for _, st := range stops {
		s.publishCancel(ctx, st.runner, st.msg)
	}
	s.advance(ctx, b)
}

// publishCancel tells a runner to stop a job now; the lease renewal says it
// again if the publication is lost.
func (s *Scheduler) publishCancel(ctx context.Context, runner string, m contracts.CancelJob) {
	env, err := contracts.New(m)
	if err == nil {
		var data []byte
		if data, err = contracts.Marshal(env); err == nil {
			err = s.tr.Publish(ctx, contracts.CancelTopic(runner), data)
		}
	}
	if err != nil {
		s.log.Warn().Err(err).Stringer("job", m.Job).Msg("publishing a cancel; the next renewal carries it")
	}
}

// finishedElsewhere drops b when the data store ended it (a cancel with
// nothing running).
func (s *Scheduler) finishedElsewhere(b *build) {
	s.mu.Lock()
	active := s.anyActive(b) && b.planned
	s.mu.Unlock()
	if !active {
		s.drop(b)
	}
}

// approve unblocks a manual job.
func (s *Scheduler) approve(ctx context.Context, b *build, id string) {
	s.mu.Lock()
	if j := b.byID[id]; j != nil && j.status == contracts.JobStatusBlocked {
		j.status, j.reason = contracts.JobStatusPending, "approved"
	}
	s.mu.Unlock()
	s.advance(ctx, b)
}

// refresh takes the final statuses of b's jobs from the data store, after
// it refused a change because a job had ended otherwise (a cancel racing
// with the scheduler). A job it cannot read is ended in memory as error, so
// the graph never waits on it.
func (s *Scheduler) refresh(ctx context.Context, b *build) {
	got, err := rpc.Call[contracts.Build](ctx, s.tr, contracts.GetBuild{Repo: b.key.repo, Number: b.key.number})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error().Err(err).Stringer("build", b.key).Msg("reading the build after a refused change")
		}
		return
	}
	if got.Status.Terminal() { // as drop does
		b.done = true
		delete(s.builds, b.key)
		s.queue = slices.DeleteFunc(s.queue, func(j *job) bool { return j.b == b })
	}
	for _, gj := range got.Jobs {
		if j := b.byID[gj.ID]; j != nil && gj.Status.Terminal() && !j.status.Terminal() {
			j.status, j.satisfied = gj.Status, gj.Status == contracts.JobStatusSuccess
		}
	}
}
