//go:build unix

// Package jobs is the job runner module: it introduces itself to the
// scheduler (dispatch.hello), long-polls for work (dispatch.request_work),
// and runs each assignment in a fresh workspace with the shell or container
// executor, renewing its lease, streaming its log to the logging module,
// restoring and saving artifacts and caches in the blob store, and reporting
// how it ended (dispatch.report_result). See contracts/dispatch.go for the
// protocol.
//
// Goroutines: one poll loop, one cancel listener, and per running job one
// job goroutine and one lease renewer. Stop stops asking for work at once,
// lets running jobs finish until Options.StopTimeout (bounded by its ctx),
// then hands the rest back (status error, requeue) and waits for every
// goroutine.
package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/recent"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/jobs/executor"
	"github.com/zeroci/zeroci/transport"
)

// Summary says in one line what the module does, for --help.
const Summary = "runners: take queued jobs and run them with the shell or container executor"

// Defaults of Options.
const (
	DefaultCapacity    = 2
	DefaultStopTimeout = 30 * time.Second
	DefaultWaitMs      = 10_000
)

// Executor names of Options.Executor.
const (
	ExecutorShell     = string(contracts.ExecutorShell)
	ExecutorContainer = string(contracts.ExecutorContainer)
)

// ErrInvalidOptions: Options.Validate failed; Start returns it wrapped.
var ErrInvalidOptions = errors.New("jobs: invalid options")

// ErrStopped is returned by Start after Stop, and by a second Start.
var ErrStopped = errors.New("jobs: runner already started or stopped")

// Options configure a runner. The zero value is valid: two shell jobs at
// once, no labels, a runner id derived from the host name and data dir.
type Options struct {
	// Capacity is how many jobs run at once (config jobs.capacity,
	// default DefaultCapacity, at most 1024).
	Capacity int
	// Labels are matched by the scheduler against jobs' labels (config
	// jobs.labels).
	Labels map[string]string
	// Executor is "shell" (default) or "container". A container runner
	// runs jobs with an image in a container and the others on the host;
	// when no engine works it refuses jobs with an image.
	Executor string
	// RunnerID names the runner to the scheduler; default: the host name
	// and a short hash of the absolute data dir, stable across restarts.
	RunnerID string
	// StopTimeout is how long running jobs may go on after Stop before
	// they are handed back (default DefaultStopTimeout; also bounded by
	// Stop's ctx).
	StopTimeout time.Duration
	// WaitMs is how long one dispatch.request_work waits for work
	// (default DefaultWaitMs).
	WaitMs int64
}

// withDefaults returns o with its zero fields set to the defaults.
func (o Options) withDefaults() Options {
	if o.Capacity == 0 {
		o.Capacity = DefaultCapacity
	}
	if o.Executor == "" {
		o.Executor = ExecutorShell
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.WaitMs == 0 {
		o.WaitMs = DefaultWaitMs
	}
	return o
}

// Validate checks the options after defaults, with runnerID standing for
// RunnerID when that is empty. Errors wrap ErrInvalidOptions.
func (o Options) Validate() error {
	o = o.withDefaults()
	id := o.RunnerID
	if id == "" {
		id = "runner"
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	if o.StopTimeout < 0 {
		return bad("stop timeout %v is negative", o.StopTimeout)
	}
	if o.WaitMs < 0 {
		return bad("wait_ms %d is negative", o.WaitMs)
	}
	hello := contracts.RunnerHello{RunnerID: id, Capacity: o.Capacity, Labels: o.Labels, Executor: contracts.Executor(o.Executor)}
	if err := hello.Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// Runner is the jobs module. Its methods are safe for concurrent use.
type Runner struct {
	opts Options

	// Set by Start, read-only afterwards.
	id        string
	log       zerolog.Logger
	tr        transport.Transport
	workDir   string       // DATA_DIR/jobs/work: one workspace per lease
	tmpDir    string       // DATA_DIR/jobs/tmp: downloads and archives in transit
	sources   *sourceCache // DATA_DIR/jobs/sources: recent commits' source archives
	lock      *os.File     // DATA_DIR/jobs/runner.lock, flocked while the runner runs
	shell     executor.Executor
	container executor.Executor // nil: not a container runner, or no engine
	noEngine  error             // why container is nil on a container runner

	ctx        context.Context // the runner's life; its end stops everything
	cancel     context.CancelFunc
	pollCtx    context.Context // asking for work; ends when Stop starts
	pollCancel context.CancelFunc
	sub        transport.Subscription
	loops      sync.WaitGroup // poll loop and cancel listener
	jobs       sync.WaitGroup // job goroutines

	mu      sync.Mutex
	state   int // stateNew, stateStarted, stateStopped
	running map[contracts.ID]*job
	started *recent.Set[contracts.ID] // leases this runner (or an earlier process of it) started
	welcome contracts.Welcome
	freed   chan struct{} // a job ended; holds at most one signal
}

const (
	stateNew = iota
	stateStarted
	stateStopped
)

var _ modules.Module = (*Runner)(nil)

// New returns the runner module; it has no side effects.
func New(o Options) *Runner {
	return &Runner{opts: o.withDefaults(), running: make(map[contracts.ID]*job), freed: make(chan struct{}, 1),
		started: recent.New[contracts.ID](startedMemory)}
}

// Name returns modules.Jobs.
func (r *Runner) Name() string { return modules.Jobs }

// ID returns the runner id (known after Start).
func (r *Runner) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.id
}

// Start prepares DATA_DIR/jobs, picks the executors, subscribes to the
// runner's cancel topic and starts asking for work. The scheduler need not
// be up: the runner retries until it answers.
func (r *Runner) Start(ctx context.Context, host modules.Host) (err error) {
	if err := r.opts.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.state != stateNew {
		r.mu.Unlock()
		return ErrStopped
	}
	r.state = stateStarted
	r.mu.Unlock()
	defer func() {
		if err != nil { // nothing runs: Stop has nothing to do
			r.mu.Lock()
			r.state = stateStopped
			r.mu.Unlock()
			if r.lock != nil {
				r.lock.Close()
			}
		}
	}()

	id, err := runnerID(r.opts.RunnerID, host.DataDir())
	if err != nil {
		return err
	}
	r.log = host.Logger().With().Str("runner", id).Logger()
	r.tr = host.Transport()
	r.workDir = filepath.Join(host.DataDir(), "jobs", "work")
	r.tmpDir = filepath.Join(host.DataDir(), "jobs", "tmp")
	srcDir := filepath.Join(host.DataDir(), "jobs", "sources")
	r.sources = newSourceCache(srcDir, r.tmpDir, sourceCacheBytes, r.tr)
	for _, d := range []string{r.workDir, r.tmpDir, srcDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("jobs: start: %w", err)
		}
	}
	// One runner process per data dir: the runner id comes from it, and
	// cleanStale takes every workspace there for a dead process's.
	if r.lock, err = lockFile(filepath.Join(host.DataDir(), "jobs", "runner.lock")); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	r.cleanStale()
	r.shell = executor.NewShell()
	if r.opts.Executor == ExecutorContainer {
		c, err := executor.NewContainer(ctx, "")
		if err != nil {
			r.noEngine = errors.New(strings.TrimPrefix(err.Error(), executor.ErrNoEngine.Error()+": "))
			r.log.Warn().Msgf("container executor: no working engine: %v", r.noEngine)
		} else {
			r.container = c
		}
	}
	sub, err := r.tr.Subscribe(ctx, contracts.CancelTopic(id))
	if err != nil {
		return fmt.Errorf("jobs: start: subscribe to %s: %w", contracts.CancelTopic(id), err)
	}
	r.mu.Lock()
	r.id = id
	r.mu.Unlock()
	r.sub = sub
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.pollCtx, r.pollCancel = context.WithCancel(r.ctx)
	r.loops.Add(2)
	go r.pollLoop()
	go r.listenCancels()
	r.log.Info().Int("capacity", r.opts.Capacity).Str("executor", r.opts.Executor).Msg("runner started")
	return nil
}

// startedMemory is how many started leases a runner remembers, to hand
// back rather than run again an assignment the scheduler sends twice (it
// only does so while the lease is live: a few jobs per slot).
const startedMemory = 4096

// cleanStale cleans up after a previous process of this runner that was
// killed. Its workspaces are named by lease: those leases were started
// (one the scheduler sends again is handed back), and what their jobs left
// running is killed. Then the workspaces and temporary files go.
func (r *Runner) cleanStale() {
	var stale []contracts.ID
	if entries, err := os.ReadDir(r.workDir); err == nil {
		for _, e := range entries {
			if id, err := contracts.ParseID(e.Name()); err == nil {
				stale = append(stale, id)
			}
		}
	}
	r.mu.Lock()
	for _, id := range stale {
		r.started.Add(id)
	}
	r.mu.Unlock()
	if n := reapLeftovers(stale); n > 0 {
		r.log.Warn().Int("processes", n).Msg("killed processes that jobs of a killed runner process left running")
	}
	for _, d := range []string{r.workDir, r.tmpDir} {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(d, e.Name())); err != nil {
				r.log.Warn().Err(err).Msg("removing a stale workspace")
			}
		}
	}
}

// Stop stops asking for work at once, lets running jobs finish until
// Options.StopTimeout or ctx's deadline (less a reserve for reporting),
// then stops the rest and hands them back to the scheduler (status error,
// requeue), and waits for every goroutine. When ctx ends first, everything
// is stopped at once. Idempotent.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	state := r.state
	r.state = stateStopped
	r.mu.Unlock()
	if state != stateStarted {
		return nil
	}
	r.pollCancel()
	done := make(chan struct{})
	go func() { r.jobs.Wait(); close(done) }()
	if !waitDone(ctx, done, r.stopGrace(ctx)) {
		r.handBackAll()
		waitDone(ctx, done, -1)
	}
	r.cancel()
	<-done
	_ = r.sub.Close()
	r.loops.Wait()
	_ = r.lock.Close()
	r.log.Info().Msg("runner stopped")
	if ctx.Err() != nil {
		return fmt.Errorf("jobs: stop: %w", ctx.Err())
	}
	return nil
}

// stopGrace is how long running jobs may go on after Stop: StopTimeout,
// and no later than ctx's deadline less a reserve (a quarter of what is
// left, at most 5s) to stop the jobs and report them.
func (r *Runner) stopGrace(ctx context.Context) time.Duration {
	grace := r.opts.StopTimeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		left -= min(left/4, 5*time.Second)
		grace = min(grace, max(left, 0))
	}
	return grace
}

// waitDone waits until done is closed, for up to d (d < 0: no bound but
// ctx's), and reports whether it was.
func waitDone(ctx context.Context, done <-chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return true
	default:
	}
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
		return true
	case <-timeout:
		return false
	case <-ctx.Done():
		return false
	}
}

// handBackAll stops every running job to hand it back.
func (r *Runner) handBackAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.running {
		j.stop(errHandBack)
	}
}

// runnerID returns the configured id, or one derived from the host name
// and the absolute data dir: "HOST-HASH8", stable across restarts.
func runnerID(configured, dataDir string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("jobs: runner id: %w", err)
	}
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(abs))
	return sanitizeHost(host) + "-" + hex.EncodeToString(sum[:4]), nil
}

// sanitizeHost makes a host name fit contracts.RunnerIDPattern (with room
// for the hash suffix): other characters become '-', at most 48 bytes.
func sanitizeHost(h string) string {
	var b strings.Builder
	for i := 0; i < len(h) && b.Len() < 48; i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '.' || c == '_' || c == '-':
			if b.Len() > 0 {
				b.WriteByte(c)
			}
		default:
			if b.Len() > 0 {
				b.WriteByte('-')
			}
		}
	}
	if b.Len() == 0 {
		return "runner"
	}
	return b.String()
}
