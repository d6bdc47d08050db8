package buildscript

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gitrepo"
	"github.com/zeroci/zeroci/modules/buildscript/pipeline"
	"github.com/zeroci/zeroci/modules/rpc"
)

// Planning: a triggered build's pipeline read at its commit and recorded,
// and a running build taken over after a restart.

// trigger registers a triggered build and plans it.
func (s *Scheduler) trigger(key buildKey, m contracts.BuildTriggered, at time.Time) {
	s.mu.Lock()
	if _, ok := s.builds[key]; ok {
		s.mu.Unlock()
		return
	}
	b := &build{key: key, ref: m.Ref, commit: m.Commit, event: m.Event, params: m.Params}
	s.builds[key] = b
	s.mu.Unlock()
	s.post(b, func(ctx context.Context) { s.plan(ctx, b, at) })
}

// adopt takes over an unfinished build found at start.
// resumed is done when a running build's jobs and leases are known again.
func (s *Scheduler) adopt(ab contracts.ActiveBuild, resumed *sync.WaitGroup) {
	key := buildKey{ab.Build.Repo, ab.Build.Number}
	s.mu.Lock()
	if _, ok := s.builds[key]; ok {
		s.mu.Unlock()
		return
	}
	bb := ab.Build
	b := &build{key: key, ref: bb.Ref, commit: bb.Commit, event: bb.Event, params: bb.Params}
	s.builds[key] = b
	s.mu.Unlock()
	if bb.Status == contracts.BuildStatusQueued {
		s.post(b, func(ctx context.Context) { s.plan(ctx, b, time.Now()) })
		return
	}
	resumed.Add(1)
	s.post(b, func(ctx context.Context) {
		var once sync.Once
		s.resume(ctx, b, ab, func() { once.Do(resumed.Done) })
	})
}

// plan reads the pipeline of a queued build and records its jobs.
func (s *Scheduler) plan(ctx context.Context, b *build, at time.Time) {
	rec, err := rpc.Call[contracts.Repo](ctx, s.tr, contracts.GetRepo{Name: b.key.repo})
	if err != nil {
		if contracts.CodeOf(err) == contracts.CodeNotFound {
			s.drop(b)
			return
		}
		s.retryLater(ctx, b, err, func(ctx context.Context) { s.plan(ctx, b, at) })
		return
	}
	b.url = rec.URL
	repo, err := s.repoAt(ctx, b.url, at)
	if err != nil {
		if errors.Is(err, gitrepo.ErrInvalid) {
			s.failBuild(ctx, b, fmt.Sprintf("repository URL refused: %v", err))
			return
		}
		s.failBuild(ctx, b, fmt.Sprintf("fetching %s: %v", rec.URL, err))
		return
	}
	b.repo = repo
	want := b.commit
	if want == "" {
		want = b.ref
	}
	commit, err := repo.Resolve(ctx, want)
	if err != nil {
		s.failBuild(ctx, b, fmt.Sprintf("%s not found in %s: %v", want, rec.URL, err))
		return
	}
	b.commit = commit
	p, err := s.readPipeline(ctx, repo, commit)
	if err != nil {
		s.failBuild(ctx, b, err.Error())
		return
	}
	b.pipe = p
	ids := p.Order()
	if len(s.o.Only) > 0 {
		if ids, err = p.Dependencies(s.o.Only...); err != nil {
			s.failBuild(ctx, b, err.Error())
			return
		}
	}
	skip, err := s.whenSkips(ctx, b, ids)
	if err != nil {
		s.failBuild(ctx, b, err.Error())
		return
	}
	planned := make([]contracts.PlannedJob, 0, len(ids))
	for _, id := range inFileOrder(p, ids) {
		d, _ := p.Job(id)
		planned = append(planned, contracts.PlannedJob{ID: id, DependsOn: d.DependsOn, Manual: d.Manual})
	}
	got, err := s.call(ctx, contracts.PlanBuild{Repo: b.key.repo, Number: b.key.number, Commit: commit, Jobs: planned})
	if err != nil {
		if contracts.CodeOf(err) != contracts.CodeConflict {
			s.log.Error().Err(err).Stringer("build", b.key).Msg("recording the plan")
		}
		s.drop(b) // canceled meanwhile, or planned by an earlier run: list_active brings it back
		return
	}
	s.setJobs(b, got)
	for _, id := range skip {
		s.skip(ctx, s.jobOf(b, id), "not run: its when condition does not match this build", false)
	}
	s.advance(ctx, b)
}

// retryLater runs f again on b's goroutine after a pause (the data store
// is out of reach).
func (s *Scheduler) retryLater(ctx context.Context, b *build, err error, f func(context.Context)) {
	s.log.Warn().Err(err).Stringer("build", b.key).Msg("retrying")
	sleep(ctx, time.Second)
	if ctx.Err() == nil {
		s.post(b, f)
	}
}

// readPipeline reads and parses the pipeline file at commit.
func (s *Scheduler) readPipeline(ctx context.Context, repo *gitrepo.Repo, commit string) (*pipeline.Pipeline, error) {
	for _, name := range pipeline.Names {
		data, err := repo.ReadFile(ctx, commit, pipeline.Dir+"/"+name)
		if errors.Is(err, gitrepo.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s/%s: %w", pipeline.Dir, name, err)
		}
		return pipeline.Parse(name, data)
	}
	return nil, fmt.Errorf("no pipeline file at %.12s: want %s/%s", commit, pipeline.Dir, strings.Join(pipeline.Names[:], ", "))
}

func inFileOrder(p *pipeline.Pipeline, ids []string) []string {
	var out []string
	for _, j := range p.Jobs {
		if slices.Contains(ids, j.ID) {
			out = append(out, j.ID)
		}
	}
	return out
}

// whenSkips returns the jobs whose when condition does not hold.
func (s *Scheduler) whenSkips(ctx context.Context, b *build, ids []string) ([]string, error) {
	mc := pipeline.MatchContext{Event: b.event}
	switch {
	case strings.HasPrefix(b.ref, "refs/tags/"):
		mc.Tag = strings.TrimPrefix(b.ref, "refs/tags/")
	default:
		mc.Branch = strings.TrimPrefix(b.ref, "refs/heads/")
	}
	needChanges := false
	for _, id := range ids {
		d, _ := b.pipe.Job(id)
		needChanges = needChanges || d.When != nil && len(d.When.Changed) > 0
	}
	if needChanges {
		base := s.lastSuccess(ctx, b)
		changed, err := b.repo.Changed(ctx, base, b.commit)
		if err != nil && base != "" { // the old commit may be gone: compare with the parent
			changed, err = b.repo.Changed(ctx, "", b.commit)
		}
		if err != nil {
			return nil, fmt.Errorf("listing changed files: %w", err)
		}
		mc.Changed, mc.ChangesKnown = changed, true
	}
	var skip []string
	for _, id := range ids {
		if d, _ := b.pipe.Job(id); !d.When.Match(mc) {
			skip = append(skip, id)
		}
	}
	return skip, nil
}

// lastSuccess returns the commit of the repository's last successful build
// of the same ref, or "" (compare with the parent).
func (s *Scheduler) lastSuccess(ctx context.Context, b *build) string {
	list, err := rpc.Call[contracts.BuildList](ctx, s.tr, contracts.ListBuilds{
		Repo: b.key.repo, Status: contracts.BuildStatusSuccess, Before: b.key.number, Limit: 20,
	})
	if err != nil {
		return ""
	}
	for _, old := range list.Builds {
		if old.Ref == b.ref && old.Commit != b.commit && len(old.Commit) == len(b.commit) {
			return old.Commit
		}
	}
	return ""
}

// setJobs builds b's job state from the data store's view of it.
func (s *Scheduler) setJobs(b *build, got contracts.Build) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.byID = map[string]*job{}
	b.jobs = nil
	for _, gj := range got.Jobs {
		d, _ := b.pipe.Job(gj.ID)
		j := &job{b: b, id: gj.ID, def: d, status: gj.Status, attempt: gj.Attempt, reason: gj.Reason,
			maxAttempts: 1 + d.Retries}
		b.jobs = append(b.jobs, j)
		b.byID[j.id] = j
	}
	b.planned = true
}

func (s *Scheduler) jobOf(b *build, id string) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return b.byID[id]
}

// resume takes over a running build after a restart.
// done is called once the leases are known, or resuming failed.
func (s *Scheduler) resume(ctx context.Context, b *build, ab contracts.ActiveBuild, done func()) {
	defer done()
	rec, err := rpc.Call[contracts.Repo](ctx, s.tr, contracts.GetRepo{Name: b.key.repo})
	if err != nil {
		s.retryLater(ctx, b, err, func(ctx context.Context) { s.resume(ctx, b, ab, func() {}) })
		return
	}
	b.url = rec.URL
	repo, err := s.mirrors.Open(ctx, b.url)
	if err == nil {
		_, err = repo.Resolve(ctx, b.commit)
	}
	if err != nil {
		if repo, err = s.repoAt(ctx, b.url, time.Now()); err != nil {
			s.failBuild(ctx, b, fmt.Sprintf("fetching %s: %v", b.url, err))
			return
		}
	}
	b.repo = repo
	if b.pipe, err = s.readPipeline(ctx, repo, b.commit); err != nil {
		s.failBuild(ctx, b, err.Error())
		return
	}
	s.setJobs(b, ab.Build)
	now := time.Now()
	s.mu.Lock()
	if ab.CancelRequested {
		b.cancel = "canceled"
	}
	for i, gj := range ab.Build.Jobs {
		j := b.jobs[i]
		switch j.status {
		case contracts.JobStatusRunning:
			lease, ok := ab.Leases[j.id]
			j.lease, j.runner, j.deadline = lease, gj.RunnerID, now.Add(s.o.LeaseTimeout)
			if !ok {
				// Running without a lease: it cannot be renewed, so it runs
				// again (as the next attempt) at the next tick.
				j.lease, j.deadline = contracts.NewID(now), now
			}
			j.cancel = b.cancel
			s.leases[j.lease] = j
		case contracts.JobStatusQueued:
			j.queuedAt = now
			s.queue = append(s.queue, j)
		case contracts.JobStatusSuccess:
			j.satisfied = true
		case contracts.JobStatusSkipped:
			j.satisfied = strings.HasPrefix(gj.Reason, unchangedPrefix)
		}
	}
	s.wakeRunners()
	s.mu.Unlock()
	done()
	s.log.Info().Stringer("build", b.key).Msg("resumed")
	if b.cancel != "" {
		s.cancelBuild(ctx, b)
		return
	}
	s.advance(ctx, b)
}
