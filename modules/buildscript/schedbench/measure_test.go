package schedbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/jobs"
	"github.com/zeroci/zeroci/modules/jobs/executor"
	"github.com/zeroci/zeroci/modules/moduletest"
	"golang.org/x/sync/errgroup"
)

// runContext returns a context that ends after runTimeout or with tb.
func runContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// prepare starts a watcher of e's hub, creates a git repository holding
// pipeline and registers it on e under each of the names repos.
func prepare(ctx context.Context, tb testing.TB, e *engine, pipeline string, repos ...string) *watcher {
	tb.Helper()
	w := startWatcher(tb, e.tr)
	src := gitRepo(tb, pipeline)
	for _, r := range repos {
		if err := createRepo(ctx, e.tr, r, src); err != nil {
			tb.Fatal(err)
		}
	}
	return w
}

// latencies are the samples of one latency run.
type latencies struct {
	trigger []time.Duration // the datastore.trigger_build request
	queued  []time.Duration // from sending it to the job.queued event
	running []time.Duration // from sending it to the job.started event
}

// measureLatency triggers n builds of the one-job pipeline of repoName one
// after another; for each it times the trigger request and the time until
// the build's job.started event arrives, then waits for the build to end.
// It fails if a build does not succeed or its job does not start exactly
// once.
func measureLatency(ctx context.Context, e *engine, w *watcher, n int) (latencies, error) {
	var out latencies
	var ks []buildKey
	for range n {
		t0 := time.Now()
		k, err := trigger(ctx, e.tr, repoName)
		if err != nil {
			return out, err
		}
		trig := time.Since(t0)
		ks = append(ks, k)
		err = w.wait(ctx, fmt.Sprintf("build %s's job to start", k), func(w *watcher) bool { return !w.build(k).firstStart.IsZero() })
		if err != nil {
			return out, err
		}
		seen := w.snapshot(k)
		err = w.wait(ctx, fmt.Sprintf("build %s to finish", k), func(w *watcher) bool { return w.build(k).finished })
		if err != nil {
			return out, err
		}
		out.trigger = append(out.trigger, trig)
		out.queued = append(out.queued, seen.firstQueue.Sub(t0))
		out.running = append(out.running, seen.firstStart.Sub(t0))
	}
	return out, w.checkBuilds(ks, []string{"run"})
}

// queueBuilds triggers n builds of the three-job pipeline, spread over
// repos in turn, and waits until the scheduler has planned them all (job a
// of each queued); it returns the builds.
func queueBuilds(ctx context.Context, e *engine, w *watcher, repos []string, n int) ([]buildKey, error) {
	var ks []buildKey
	for i := range n {
		k, err := trigger(ctx, e.tr, repos[i%len(repos)])
		if err != nil {
			return nil, err
		}
		ks = append(ks, k)
	}
	err := w.wait(ctx, fmt.Sprintf("%d builds to be queued", n), func(w *watcher) bool {
		for _, k := range ks {
			if w.build(k).queued["a"] == 0 {
				return false
			}
		}
		return true
	})
	return ks, err
}

// runBuilds starts runners in-process jobs modules (capacity
// runnerCapacity, distinct runner IDs) on e's node, waits until the builds
// ks are all final, stops the runners and returns the time from their
// start to the last build's end. It fails unless every build succeeded and
// every job of the three-job pipeline started exactly once, at attempt 1.
func runBuilds(ctx context.Context, tb testing.TB, e *engine, w *watcher, ks []buildKey, runners int) (time.Duration, error) {
	dirs := make([]string, runners)
	for i := range dirs {
		dirs[i] = tb.TempDir()
	}
	log := logger(tb)
	start := time.Now()
	var stops []func()
	for i := range runners {
		r := jobs.New(jobs.Options{RunnerID: fmt.Sprintf("runner-%d", i+1), Capacity: runnerCapacity})
		stops = append(stops, moduletest.Start(tb, r, moduletest.Host{TR: e.tr, Log: log, Dir: dirs[i]}))
	}
	err := w.wait(ctx, fmt.Sprintf("%d builds to finish", len(ks)), func(w *watcher) bool { return w.allFinished(ks) })
	wall := time.Since(start)
	for _, stop := range slices.Backward(stops) {
		stop()
	}
	if err != nil {
		return 0, err
	}
	return wall, w.checkBuilds(ks, threeJobs)
}

// shellBaseline runs n `echo` scripts directly with the shell executor,
// conc at a time, each in a fresh workspace directory, and returns the
// wall time. It fails unless every script succeeded and printed its line.
func shellBaseline(ctx context.Context, tb testing.TB, n, conc int) (time.Duration, error) {
	root := tb.TempDir()
	sh := executor.NewShell(executor.WithTempDir(tb.TempDir()))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	start := time.Now()
	for i := range int64(n) {
		g.Go(func() error {
			job := threeJobs[i%int64(len(threeJobs))]
			dir := filepath.Join(root, strconv.FormatInt(i, 10))
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			lines := 0
			res := sh.Run(gctx, executor.Spec{Script: []string{"echo " + job}, Dir: dir,
				Env: map[string]string{"ZEROCI_JOB": job}}, func(_ contracts.Stream, text string) {
				if text == job {
					lines++
				}
			})
			if !res.Succeeded() || lines != 1 {
				return fmt.Errorf("script %d: exit %v, err %v, %d lines", i, res.ExitCode, res.Err, lines)
			}
			return nil
		})
	}
	err := g.Wait()
	wall := time.Since(start)
	if err != nil {
		return 0, err
	}
	if ctx.Err() != nil {
		return 0, errors.New("shell baseline: canceled")
	}
	return wall, nil
}

// cpuTime is the CPU time (user and system) this process and its waited-for
// children have used so far.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			return 0
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}
