package schedbench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// repoName is the repository every benchmark builds.
const repoName = "bench"

// runTimeout bounds one measured run (and a test).
const runTimeout = 3 * time.Minute

// Pipelines.
const (
	oneJobPipeline = `jobs:
  run:
    script: [echo running]
`
	threeJobPipeline = `jobs:
  a:
    script: [echo a]
  b:
    depends_on: [a]
    script: [echo b]
  c:
    depends_on: [a]
    script: [echo c]
`
)

// threeJobs are the jobs of threeJobPipeline.
var threeJobs = []string{"a", "b", "c"}

// gitRepo creates a git repository whose branch main holds pipeline as
// .zeroci/pipeline.yaml, and returns its path.
func gitRepo(tb testing.TB, pipeline string) string { return gittest.PipelineRepo(tb, pipeline) }

// logger is the modules' logger: warnings and above, to the test's log.
func logger(tb testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// benchConfig is the configuration of an engine under dir: defaults,
// local repositories allowed.
func benchConfig(dir string) *config.Config {
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Buildscript.AllowLocal = true
	return cfg
}

// engine is a running zeroci: tr reaches every module; stop stops them
// (idempotent).
type engine struct {
	tr   transport.Transport
	stop func()
}

// startInproc starts every module but the api in this process with
// server.StartLocal. Without a runner, the jobs module is left out
// (runners are then started by the caller, see startRunner).
func startInproc(tb testing.TB, withRunner bool) *engine {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	override := map[string]modules.Module{}
	log := logger(tb)
	if !withRunner {
		override[modules.Jobs] = nil
	}
	local, err := server.StartLocal(ctx, benchConfig(filepath.Join(tb.TempDir(), "data")), log, override)
	if err != nil {
		tb.Fatalf("start local: %v", err)
	}
	var once sync.Once
	e := &engine{tr: local.TR, stop: func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), server.ShutdownTimeout)
			defer cancel()
			if err := local.Stop(ctx); err != nil {
				tb.Errorf("stop local: %v", err)
			}
		})
	}}
	tb.Cleanup(e.stop)
	return e
}

// createRepo registers the repository at src as name.
func createRepo(ctx context.Context, tr transport.Requester, name, src string) error {
	_, err := rpc.Call[contracts.Repo](ctx, tr, contracts.CreateRepo{Name: name, URL: src, DefaultBranch: "main"})
	if err != nil {
		return fmt.Errorf("create repo %s: %w", name, err)
	}
	return nil
}

// buildKey names a build.
type buildKey struct {
	repo string
	n    int64
}

func (k buildKey) String() string { return fmt.Sprintf("%s#%d", k.repo, k.n) }

// trigger triggers a build of repo's main branch.
func trigger(ctx context.Context, tr transport.Requester, repo string) (buildKey, error) {
	b, err := rpc.Call[contracts.Build](ctx, tr, contracts.TriggerBuild{Repo: repo, Ref: "main", Event: contracts.TriggerManual, User: "bench"})
	if err != nil {
		return buildKey{}, fmt.Errorf("trigger %s: %w", repo, err)
	}
	return buildKey{repo, b.Number}, nil
}

// buildSeen is what the watcher saw of one build.
type buildSeen struct {
	firstQueue time.Time      // when its first job.queued arrived
	firstStart time.Time      // when its first job.started arrived
	queued     map[string]int // job.queued events by job
	started    map[string]int // job.started events by job
	maxAttempt int            // the highest attempt of a job.started
	finished   bool
	status     contracts.BuildStatus
	err        string
}

// watcher follows the hub from the start and records, per build, the
// events the benchmarks check. It is safe for concurrent
// use.
type watcher struct {
	mu      sync.Mutex
	builds  map[buildKey]*buildSeen
	bad     error         // an event that did not decode, or the follower's end
	changed chan struct{} // closed and replaced at each recorded event

	cancel   context.CancelFunc
	done     chan struct{} // closed when the follower returned
	stopOnce sync.Once
}

// startWatcher starts following the hub on tr; it stops when the test
// ends (before the engine, if the engine was started first) or at stop.
func startWatcher(tb testing.TB, tr transport.Transport) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{builds: map[buildKey]*buildSeen{}, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		err := hubclient.Follow(ctx, tr, 0, w.record)
		if ctx.Err() == nil { // the follower gave up: waiters must hear it
			w.mu.Lock()
			w.bad = fmt.Errorf("following the hub: %w", err)
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	tb.Cleanup(w.stop)
	return w
}

// stop stops following and waits for the follower (idempotent).
func (w *watcher) stop() {
	w.stopOnce.Do(func() {
		w.cancel()
		<-w.done
	})
}

// build returns the record of build k, creating it; w.mu is held.
func (w *watcher) build(k buildKey) *buildSeen {
	s, ok := w.builds[k]
	if !ok {
		s = &buildSeen{queued: map[string]int{}, started: map[string]int{}}
		w.builds[k] = s
	}
	return s
}

// record is the follower's callback.
func (w *watcher) record(ev contracts.Event) error {
	if ev.Repo == "" || ev.Build == 0 {
		return nil
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.build(buildKey{ev.Repo, ev.Build})
	switch ev.Type {
	case contracts.TypeJobQueued:
		if s.firstQueue.IsZero() {
			s.firstQueue = now
		}
		s.queued[ev.Job]++
	case contracts.TypeJobStarted:
		p, err := ev.DecodePayload()
		st, ok := p.(contracts.JobStarted)
		if err != nil || !ok {
			w.bad = fmt.Errorf("event %d (%s): %v", ev.Seq, ev.Type, err)
			break
		}
		if s.firstStart.IsZero() {
			s.firstStart = now
		}
		s.started[ev.Job]++
		s.maxAttempt = max(s.maxAttempt, st.Attempt)
	case contracts.TypeBuildFinished:
		p, err := ev.DecodePayload()
		fin, ok := p.(contracts.BuildFinished)
		if err != nil || !ok {
			w.bad = fmt.Errorf("event %d (%s): %v", ev.Seq, ev.Type, err)
			break
		}
		s.finished, s.status, s.err = true, fin.Status, fin.Error
	default:
		return nil
	}
	close(w.changed)
	w.changed = make(chan struct{})
	return nil
}

// wait returns once cond holds (called with w.mu held, on the watcher's
// state), or an error naming what when ctx ends first.
func (w *watcher) wait(ctx context.Context, what string, cond func(w *watcher) bool) error {
	for {
		w.mu.Lock()
		ok, ch, bad := cond(w), w.changed, w.bad
		w.mu.Unlock()
		if bad != nil {
			return bad
		}
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// snapshot returns a copy of build k's record.
func (w *watcher) snapshot(k buildKey) buildSeen {
	w.mu.Lock()
	defer w.mu.Unlock()
	return *w.build(k)
}

// allFinished reports whether every build of ks is final; w.mu is held.
func (w *watcher) allFinished(ks []buildKey) bool {
	for _, k := range ks {
		if !w.build(k).finished {
			return false
		}
	}
	return true
}

// checkBuilds checks that the builds ks all succeeded and that each job of
// jobs started exactly once in each, at attempt 1, with no other
// job.started event for them.
func (w *watcher) checkBuilds(ks []buildKey, jobs []string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var problems []string
	starts := 0
	for _, k := range ks {
		s := w.build(k)
		if !s.finished || s.status != contracts.BuildStatusSuccess {
			problems = append(problems, fmt.Sprintf("build %s: %s %s", k, s.status, s.err))
		}
		for _, j := range jobs {
			if s.started[j] != 1 {
				problems = append(problems, fmt.Sprintf("build %s job %s started %d times", k, j, s.started[j]))
			}
		}
		for _, c := range s.started {
			starts += c
		}
		if s.maxAttempt > 1 {
			problems = append(problems, fmt.Sprintf("build %s: a job ran at attempt %d", k, s.maxAttempt))
		}
	}
	if want := len(ks) * len(jobs); starts != want {
		problems = append(problems, fmt.Sprintf("%d job.started events for %d builds, want %d", starts, len(ks), want))
	}
	if len(problems) > 5 {
		problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
