// Package buildscript is the scheduler module: it turns triggered builds
// into job graphs and hands their jobs to runners.
//
// For each build.triggered event it syncs the repository's mirror (real
// git, DATA_DIR/buildscript/mirrors), resolves the commit, reads and
// validates the pipeline file at that commit, records the plan
// (datastore.plan_build) and then runs the graph: a job whose
// dependencies succeeded is queued (or skipped when its inputs are
// unchanged since a successful run), a job with a dependency that did not
// succeed is skipped, and the build ends when every job has.
//
// Runners pull work over the dispatch service (contracts/dispatch.go). An
// assignment is a lease the runner renews; a lease that is not renewed in
// time is lost and its job runs again as a new attempt, and the old
// attempt's late renewals and results get CodeConflict.
//
// Durability: every state change goes to the data store (and so the event
// log) before it takes effect: a job is recorded running, with its lease,
// before the runner hears of it. On start the scheduler waits until the
// data store has applied the hub's head, reads every unfinished build
// (datastore.list_active) with its jobs and leases, and follows the hub
// from that head, so a restart loses no queued or running job: renewals
// of leases handed out before the restart are accepted.
//
// Threading: one goroutine per build with work to do (a build's actions
// run in order, one at a time, so its data store updates never race), the
// transport's handler goroutines for the dispatch requests, one follower
// of the hub, and one ticker for lease expiry and pending reasons. s.mu
// guards all job and runner state; no I/O is done while holding it.
package buildscript

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gitrepo"
	"github.com/zeroci/zeroci/internal/recent"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Summary says in one line what the module does, for --help.
const Summary = "scheduler: plans builds from pipeline files and hands their jobs to runners"

// Defaults of Options.
const (
	DefaultLeaseTimeout  = 30 * time.Second
	DefaultMaxLostLeases = 3
	// serveConcurrency bounds the dispatch requests handled at once;
	// runners wait in request_work, so it is large.
	serveConcurrency = 4096
	// queuedReasonAfter is how long a job waits for a runner before its
	// pending reason says why.
	queuedReasonAfter = 500 * time.Millisecond
)

// Options configure the scheduler.
type Options struct {
	// LeaseTimeout is how long a lease lasts after each renewal (default
	// DefaultLeaseTimeout); runners renew every LeaseTimeout/5.
	LeaseTimeout time.Duration
	// AllowLocal lets repositories be local paths or file:// URLs (off by
	// default: a repository URL would otherwise read the scheduler's disk).
	AllowLocal bool
	// Only restricts every build to these jobs and what they depend on
	// (zeroci run --job); empty means all jobs.
	Only []string
	// MaxLostLeases is how many times a job may lose its runner before it
	// ends in error instead of running again (default DefaultMaxLostLeases).
	MaxLostLeases int
}

func (o Options) withDefaults() Options {
	if o.LeaseTimeout <= 0 {
		o.LeaseTimeout = DefaultLeaseTimeout
	}
	if o.MaxLostLeases <= 0 {
		o.MaxLostLeases = DefaultMaxLostLeases
	}
	return o
}

func (o Options) heartbeat() time.Duration { return o.LeaseTimeout / 5 }

// Scheduler is the buildscript module.
type Scheduler struct {
	o       Options
	log     zerolog.Logger
	tr      transport.Transport
	mirrors *gitrepo.Mirrors
	svc     transport.Service

	ctx    context.Context // the module's life
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{} // closed when recovery is done

	syncMu sync.Mutex
	syncs  map[string]*syncRun // by repository URL

	mu      sync.Mutex
	builds  map[buildKey]*build
	queue   []*job // queued jobs waiting for a runner, oldest first
	leases  map[contracts.ID]*job
	ended   *recent.Set[contracts.ID] // leases whose result was recorded
	runners map[string]*runner
	wake    chan struct{} // closed and replaced when the queue gains jobs
}

// New returns the module, constructed without side effects.
func New(o Options) *Scheduler {
	return &Scheduler{o: o.withDefaults()}
}

// Name implements modules.Module.
func (s *Scheduler) Name() string { return modules.Buildscript }

// Start opens the mirror cache, serves the dispatch service and starts
// recovery and the hub follower in the background.
func (s *Scheduler) Start(ctx context.Context, host modules.Host) error {
	s.log = host.Logger()
	s.tr = host.Transport()
	dir := filepath.Join(host.DataDir(), modules.Buildscript)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("buildscript: %w", err)
	}
	opts := []gitrepo.Option{}
	if s.o.AllowLocal {
		opts = append(opts, gitrepo.WithProtocols(append(append([]string{}, gitrepo.DefaultProtocols...), "file")...))
	}
	m, err := gitrepo.NewMirrors(filepath.Join(dir, "mirrors"), opts...)
	if err != nil {
		return fmt.Errorf("buildscript: %w", err)
	}
	s.mirrors = m
	s.syncs = map[string]*syncRun{}
	s.builds = map[buildKey]*build{}
	s.leases = map[contracts.ID]*job{}
	s.ended = recent.New[contracts.ID](1 << 16)
	s.runners = map[string]*runner{}
	s.wake = make(chan struct{})
	s.ready = make(chan struct{})
	s.ctx, s.cancel = context.WithCancel(context.Background())

	mux := rpc.NewMux(s.log)
	rpc.Handle(mux, s.hello)
	rpc.Handle(mux, s.requestWork)
	rpc.Handle(mux, s.renew)
	rpc.Handle(mux, s.result)
	rpc.Handle(mux, s.stats)
	svc, err := mux.Serve(s.tr, contracts.ServiceDispatch, transport.WithConcurrency(serveConcurrency))
	if err != nil {
		s.cancel()
		return fmt.Errorf("buildscript: serve: %w", err)
	}
	s.svc = svc
	s.wg.Add(2)
	go s.run()
	go s.tick()
	return nil
}

// Stop stops following the hub and serving runners. Builds stay as the
// data store has them; the next start picks them up.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.cancel()
	var err error
	if s.svc != nil {
		err = s.svc.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("buildscript: stop: %w", ctx.Err()))
	}
	return err
}

// run recovers the unfinished builds and then follows the hub; if
// following fails (the hub lost events it had, or removed them), it
// recovers again from the hub's new head.
func (s *Scheduler) run() {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		head, err := s.recoverAll(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("recovering unfinished builds; retrying")
				sleep(s.ctx, time.Second)
			}
			continue
		}
		s.markReady()
		err = hubclient.Follow(s.ctx, s.tr, head, s.onEvent)
		if s.ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("following the event hub failed; recovering from its head")
			sleep(s.ctx, time.Second)
		}
	}
}

func (s *Scheduler) markReady() {
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
}

// waitReady waits until recovery is done, so that renewals of leases
// from before a restart are recognised.
func (s *Scheduler) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return contracts.NewError(contracts.CodeUnavailable, "the scheduler is starting")
	}
}

// recoverAll reads the hub's head, waits until the data store applied it
// and adopts every unfinished build; it returns the head to follow from.
func (s *Scheduler) recoverAll(ctx context.Context) (int64, error) {
	batch, err := hubclient.Read(ctx, s.tr, contracts.ReadEvents{Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("read the hub's head: %w", err)
	}
	head := batch.Head
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = rpc.Call[contracts.Synced](sctx, s.tr, contracts.Sync{Seq: head})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("wait for the data store to apply event %d: %w", head, err)
	}
	req := contracts.ListActive{Limit: contracts.MaxListLimit}
	n := 0
	// Runners renew leases from before the restart; they are known once
	// the running builds are resumed (from the local mirrors, quickly).
	var resumed sync.WaitGroup
	defer waitFor(&resumed, 30*time.Second)
	for {
		page, err := rpc.Call[contracts.ActiveBuilds](ctx, s.tr, req)
		if err != nil {
			return 0, fmt.Errorf("list unfinished builds: %w", err)
		}
		for _, ab := range page.Builds {
			s.adopt(ab, &resumed)
			n++
		}
		if len(page.Builds) < req.Limit {
			break
		}
		last := page.Builds[len(page.Builds)-1].Build
		req.AfterRepo, req.AfterNumber = last.Repo, last.Number
	}
	s.log.Info().Int64("head", head).Int("builds", n).Msg("scheduler ready")
	return head, nil
}

// onEvent handles the hub events the scheduler acts on.
func (s *Scheduler) onEvent(ev contracts.Event) error {
	key := buildKey{ev.Repo, ev.Build}
	switch ev.Type {
	case contracts.TypeBuildTriggered:
		msg, err := ev.DecodePayload()
		m, ok := msg.(contracts.BuildTriggered)
		if err != nil || !ok {
			s.log.Error().Err(err).Int64("seq", ev.Seq).Msg("undecodable build.triggered")
			return nil
		}
		s.trigger(key, m, ev.Time)
	case contracts.TypeBuildCanceled:
		if b := s.build(key); b != nil {
			s.post(b, func(ctx context.Context) { s.cancelBuild(ctx, b) })
		}
	case contracts.TypeBuildFinished:
		if b := s.build(key); b != nil {
			s.post(b, func(context.Context) { s.finishedElsewhere(b) })
		}
	case contracts.TypeJobApproved:
		if b := s.build(key); b != nil {
			id := ev.Job
			s.post(b, func(ctx context.Context) { s.approve(ctx, b, id) })
		}
	}
	return nil
}

func (s *Scheduler) build(key buildKey) *build {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.builds[key]
}

// syncRun is one git sync of a repository URL, shared by the builds that
// wait for it.
type syncRun struct {
	start time.Time
	done  chan struct{}
	repo  *gitrepo.Repo
	err   error
}

// repoAt returns the mirror of url synced by a fetch that started no
// earlier than after: a build triggered at time T needs a fetch that
// started after T, and one such fetch serves every build triggered
// before it started.
func (s *Scheduler) repoAt(ctx context.Context, url string, after time.Time) (*gitrepo.Repo, error) {
	s.syncMu.Lock()
	if r := s.syncs[url]; r != nil && !r.start.Before(after) {
		s.syncMu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r.err == nil {
			return r.repo, nil
		}
		s.syncMu.Lock()
	}
	r := &syncRun{start: time.Now(), done: make(chan struct{})}
	s.syncs[url] = r
	s.syncMu.Unlock()
	r.repo, r.err = s.mirrors.Sync(ctx, url)
	close(r.done)
	return r.repo, r.err
}

// tick expires leases, forgets silent runners and updates the reasons of
// jobs waiting for a runner.
func (s *Scheduler) tick() {
	defer s.wg.Done()
	every := max(s.o.LeaseTimeout/10, 20*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.expireLeases()
		s.updateQueuedReasons(s.ctx)
	}
}

// waitFor waits for wg, at most d.
func waitFor(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
