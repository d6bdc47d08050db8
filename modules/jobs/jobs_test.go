//go:build unix

package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/proctest"
	"github.com/zeroci/zeroci/modules/jobs"
	"github.com/zeroci/zeroci/modules/jobs/executor"
	"github.com/zeroci/zeroci/modules/rpc"
)

func wantStatus(t *testing.T, res contracts.JobResult, status contracts.JobStatus, reason string) {
	t.Helper()
	if res.Status != status || !strings.Contains(res.Reason, reason) {
		t.Fatalf("result %s %q, want %s with reason containing %q", res.Status, res.Reason, status, reason)
	}
	if res.RunnerID != runnerID || res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
		t.Fatalf("result %+v", res)
	}
}

func TestSuccessStreamsLog(t *testing.T) {
	e := newEnv(t)
	// The runner starts before the scheduler serves: it retries hello.
	e.startRunner(jobs.Options{})
	a := e.assign("build", []string{
		"echo hello from $ZEROCI_REPO#$ZEROCI_BUILD_NUMBER/$ZEROCI_JOB at $ZEROCI_REF",
		`test "$ZEROCI_COMMIT" = ` + e.commit,
		"echo to stderr >&2",
		"cat README",
		"./tools/run.sh", // the executable bit survived
	}, nil)
	e.serveDispatch()
	res := e.disp.result(t, a)
	wantStatus(t, res, contracts.JobStatusSuccess, "")
	if res.ExitCode == nil || *res.ExitCode != 0 || res.Attempt != 1 || res.Job != ref("build") {
		t.Fatalf("result %+v", res)
	}
	log, _ := e.logText("build")
	for _, want := range []string{"hello from web#1/build at refs/heads/main\n", "to stderr\n", "hello\n", "run.sh ran\n"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	// The runner closes the last attempt's log right after its report.
	deadline := time.Now().Add(10 * time.Second)
	for _, closed := e.logText("build"); !closed; _, closed = e.logText("build") {
		if time.Now().After(deadline) {
			t.Fatal("the last attempt's log is not closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(e.disp.hellos) == 0 || e.disp.hellos[0].Executor != contracts.ExecutorShell || e.disp.hellos[0].Capacity != jobs.DefaultCapacity {
		t.Fatalf("hellos %+v", e.disp.hellos)
	}
}

func TestFailureKeepsLogOpenForRetry(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	a := e.assign("test", []string{"echo failing", "exit 3"}, func(a *contracts.Assignment) { a.MaxAttempts = 2 })
	res := e.disp.result(t, a)
	wantStatus(t, res, contracts.JobStatusFailure, "exit code 3")
	if res.ExitCode == nil || *res.ExitCode != 3 {
		t.Fatalf("exit code %v", res.ExitCode)
	}
	if log, closed := e.logText("test"); !strings.Contains(log, "failing") || closed {
		t.Fatalf("closed %v, log:\n%s", closed, log)
	}
}

func TestTimeoutKillsBackgroundProcess(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	a := e.assign("slow", []string{"sleep 300 &", `echo $! > "$OUT/pid"`, "wait"}, func(a *contracts.Assignment) { a.Job.TimeoutMs = 1000 })
	pid, err := strconv.Atoi(e.waitFile("pid"))
	if err != nil {
		t.Fatal(err)
	}
	res := e.disp.result(t, a)
	wantStatus(t, res, contracts.JobStatusFailure, "timeout after 1s")
	if res.ExitCode != nil {
		t.Fatalf("exit code %d after a timeout", *res.ExitCode)
	}
	eventually(t, 10*time.Second, "the background sleep to be gone", func() bool { return proctest.Gone(pid) })
	if log, _ := e.logText("slow"); !strings.Contains(log, "zeroci: timeout after 1s") {
		t.Fatalf("log:\n%s", log)
	}
}

func TestCancelByLease(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	a := e.assign("long", []string{"sleep 300 &", `echo $! > "$OUT/pid"`, "wait"}, nil)
	pid, _ := strconv.Atoi(e.waitFile("pid"))
	e.disp.setCancel(a, "canceled by ann")
	res := e.disp.result(t, a)
	wantStatus(t, res, contracts.JobStatusCanceled, "canceled by ann")
	eventually(t, 10*time.Second, "the sleep to be gone", func() bool { return proctest.Gone(pid) })
}

func TestCancelByPublication(t *testing.T) {
	e := newEnv(t)
	e.disp.welcome.HeartbeatMs = 900 // no cancel is set on renewals: only the publication cancels
	e.serveDispatch()
	e.startRunner(jobs.Options{StopTimeout: 100 * time.Millisecond}) // hands "other" back at the end
	// A cancel for another runner whose id starts with ours is ignored.
	other := e.assign("other", []string{"sleep 300"}, nil)
	a := e.assign("long", []string{"sleep 300 &", `echo $! > "$OUT/pid"`, "wait"}, nil)
	pid, _ := strconv.Atoi(e.waitFile("pid"))
	publish := func(runner string, a contracts.Assignment, reason string) {
		env, err := contracts.New(contracts.CancelJob{RunnerID: runner, LeaseID: a.LeaseID, Job: a.Job.Job, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		data, err := contracts.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.client.Publish(ctxT(t), contracts.CancelTopic(runner), data); err != nil {
			t.Fatal(err)
		}
	}
	publish(runnerID+"0", other, "not for us")
	publish(runnerID, a, "build canceled")
	res := e.disp.result(t, a)
	wantStatus(t, res, contracts.JobStatusCanceled, "build canceled")
	eventually(t, 10*time.Second, "the sleep to be gone", func() bool { return proctest.Gone(pid) })
	e.disp.mu.Lock()
	_, otherDone := e.disp.results[other.LeaseID]
	e.disp.mu.Unlock()
	if otherDone {
		t.Fatal("a cancel on another runner's topic stopped our job")
	}
}

func TestArtifactsSavedAndRestored(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	a := e.assign("compile", []string{
		"mkdir -p bin/sub", "printf '#!/bin/sh\\necho app ran\\n' > bin/app", "chmod +x bin/app", "echo x > bin/sub/data", "echo r > report.txt",
	}, func(a *contracts.Assignment) {
		a.Job.Artifacts = []contracts.ArtifactSpec{{ID: "bin", Paths: []string{"bin/"}}, {ID: "report", Paths: []string{"report.txt"}}}
	})
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
	b := e.assign("deploy", []string{"./bin/app", "cat bin/sub/data report.txt"}, func(a *contracts.Assignment) {
		a.Job.RestoreArtifacts = []string{"bin", "report"}
	})
	wantStatus(t, e.disp.result(t, b), contracts.JobStatusSuccess, "")
	log, _ := e.logText("deploy")
	if !strings.Contains(log, "app ran\nx\nr\n") {
		t.Fatalf("log:\n%s", log)
	}

	// A path that is not there fails the job.
	c := e.assign("nobin", []string{"true"}, func(a *contracts.Assignment) {
		a.Job.Artifacts = []contracts.ArtifactSpec{{ID: "out", Paths: []string{"out/"}}}
	})
	wantStatus(t, e.disp.result(t, c), contracts.JobStatusFailure, "artifact out: out/ not found")
	// A missing artifact blob is an error.
	d := e.assign("needs", []string{"true"}, func(a *contracts.Assignment) { a.Job.RestoreArtifacts = []string{"nope"} })
	wantStatus(t, e.disp.result(t, d), contracts.JobStatusError, "restoring artifact nope failed")
	if log, _ := e.logText("needs"); !strings.Contains(log, "zeroci: restoring artifact nope failed") {
		t.Fatalf("log:\n%s", log)
	}
}

func TestCacheMissThenHit(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	cache := func(a *contracts.Assignment) {
		a.Job.Caches = []contracts.CacheSpec{{ID: "deps", Key: `deps-{{ checksum "go.sum" }}`, Paths: []string{"cache/", "missing/"}}}
	}
	a := e.assign("first", []string{"test ! -e cache", "mkdir cache", "echo v1 > cache/data"}, cache)
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
	b := e.assign("second", []string{`test "$(cat cache/data)" = v1`}, cache)
	wantStatus(t, e.disp.result(t, b), contracts.JobStatusSuccess, "")
	first, _ := e.logText("first")
	second, _ := e.logText("second")
	if !strings.Contains(first, "cache deps: deps-") || !strings.Contains(first, "not found") || !strings.Contains(first, "cache deps: saved") {
		t.Fatalf("first log:\n%s", first)
	}
	if !strings.Contains(second, "cache deps: restored deps-") || strings.Contains(second, "saved") {
		t.Fatalf("second log:\n%s", second)
	}
	// A failing job saves nothing.
	e.commit = e.putSource(map[string]string{"go.sum": "deps v2\n"})
	c := e.assign("third", []string{"mkdir cache", "echo v2 > cache/data", "false"}, cache)
	wantStatus(t, e.disp.result(t, c), contracts.JobStatusFailure, "")
	d := e.assign("fourth", []string{"test ! -e cache"}, cache)
	wantStatus(t, e.disp.result(t, d), contracts.JobStatusSuccess, "")
}

func TestSecretInjectedAndMasked(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	const value = "hunter2-very-secret"
	must := func(req contracts.Message) {
		t.Helper()
		if _, err := rpc.Do(ctxT(t), e.client, req); err != nil {
			t.Fatalf("%s: %v", req.MessageType(), err)
		}
	}
	must(contracts.CreateRepo{Name: repo, URL: "https://git.example.com/web.git"})
	must(contracts.SetSecret{Repo: repo, Name: "DEPLOY_KEY", Value: value})
	must(contracts.TriggerBuild{Repo: repo, Event: contracts.TriggerManual})
	must(contracts.PlanBuild{Repo: repo, Number: build, Commit: e.commit, Jobs: []contracts.PlannedJob{{ID: "deploy"}}})
	lease := contracts.NewID(time.Now())
	now := time.Now().UTC()
	must(contracts.UpdateJob{Job: ref("deploy"), Status: contracts.JobStatusQueued, Attempt: 1, Time: now})
	must(contracts.UpdateJob{Job: ref("deploy"), Status: contracts.JobStatusRunning, Attempt: 1, RunnerID: runnerID, LeaseID: lease, Time: now})

	e.startRunner(jobs.Options{})
	a := e.assign("deploy", []string{`echo "key=$TOKEN"`, `test "$TOKEN" = ` + value}, func(a *contracts.Assignment) {
		a.LeaseID = lease
		a.Job.SecretEnv = map[string]string{"TOKEN": "DEPLOY_KEY"}
	})
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
	log, _ := e.logText("deploy")
	if !strings.Contains(log, "key=***") || strings.Contains(log, value) {
		t.Fatalf("log:\n%s", log)
	}
	// A job not running under its lease gets no secrets: an error.
	b := e.assign("other", []string{"true"}, func(a *contracts.Assignment) {
		a.Job.SecretEnv = map[string]string{"TOKEN": "DEPLOY_KEY"}
	})
	wantStatus(t, e.disp.result(t, b), contracts.JobStatusError, "reading secrets DEPLOY_KEY failed")
}

func TestCapacityRespected(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{Capacity: 2})
	var as []contracts.Assignment
	for i := range 4 {
		as = append(as, e.assign(fmt.Sprintf("j%d", i), []string{
			`date +%s%N > "$OUT/$ZEROCI_JOB.start"`, "sleep 0.3", `date +%s%N > "$OUT/$ZEROCI_JOB.end"`,
		}, nil))
	}
	type span struct{ start, end int64 }
	var spans []span
	for _, a := range as {
		wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
		s, _ := strconv.ParseInt(e.waitFile(a.Job.Job.Job+".start"), 10, 64)
		f, _ := strconv.ParseInt(e.waitFile(a.Job.Job.Job+".end"), 10, 64)
		spans = append(spans, span{s, f})
	}
	for _, s := range spans {
		overlapping := 0
		for _, o := range spans {
			if o.start <= s.start && s.start < o.end {
				overlapping++
			}
		}
		if overlapping > 2 {
			t.Fatalf("%d jobs ran at once: %v", overlapping, spans)
		}
	}
	e.disp.mu.Lock()
	defer e.disp.mu.Unlock()
	if e.disp.maxOut > 2 {
		t.Fatalf("the runner held %d leases at once", e.disp.maxOut)
	}
}

func TestStopHandsBackRunningJob(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	_, stop := e.startRunner(jobs.Options{StopTimeout: 300 * time.Millisecond})
	quick := e.assign("quick", []string{"true"}, nil)
	wantStatus(t, e.disp.result(t, quick), contracts.JobStatusSuccess, "")
	a := e.assign("long", []string{"sleep 300 &", `echo $! > "$OUT/pid"`, "wait"}, nil)
	pid, _ := strconv.Atoi(e.waitFile("pid"))
	start := time.Now()
	stop()
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("stop took %v", d)
	}
	e.disp.mu.Lock()
	res, ok := e.disp.results[a.LeaseID]
	e.disp.mu.Unlock()
	if !ok {
		t.Fatal("no result after Stop")
	}
	wantStatus(t, res, contracts.JobStatusError, "runner r1 stopped before the job finished; handed back")
	if !res.Requeue {
		t.Fatal("not handed back with requeue")
	}
	if !proctest.Gone(pid) {
		t.Fatal("the job's process survived Stop")
	}
	// Work queued after Stop is not taken.
	late := e.assign("late", []string{"true"}, nil)
	e.disp.mu.Lock()
	defer e.disp.mu.Unlock()
	if len(e.disp.queue) != 1 || e.disp.queue[0].LeaseID != late.LeaseID {
		t.Fatal("a stopped runner took work")
	}
}

func TestStopWaitsForShortJob(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	_, stop := e.startRunner(jobs.Options{StopTimeout: 30 * time.Second})
	a := e.assign("short", []string{`echo > "$OUT/started"`, "sleep 0.5", "echo done"}, nil)
	e.waitFile("started")
	stop()
	e.disp.mu.Lock()
	res, ok := e.disp.results[a.LeaseID]
	e.disp.mu.Unlock()
	if !ok {
		t.Fatal("no result after Stop")
	}
	wantStatus(t, res, contracts.JobStatusSuccess, "")
}

func TestLostLeaseKillsJob(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	a := e.assign("long", []string{"sleep 300 &", `echo $! > "$OUT/pid"`, "wait"}, nil)
	pid, _ := strconv.Atoi(e.waitFile("pid"))
	e.disp.setLost(a)
	eventually(t, 20*time.Second, "the job's process to be killed", func() bool { return proctest.Gone(pid) })
	// The runner frees the slot and reports nothing: the next job runs.
	b := e.assign("next", []string{"true"}, nil)
	wantStatus(t, e.disp.result(t, b), contracts.JobStatusSuccess, "")
	e.disp.mu.Lock()
	defer e.disp.mu.Unlock()
	if _, ok := e.disp.results[a.LeaseID]; ok {
		t.Fatal("a result was taken for a lost lease")
	}
}

func TestUnsafeSourceRefused(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	outside := t.TempDir()
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{"dotdot", []tarEntry{{name: "ok.txt", body: "x"}, {name: "../x", body: "evil"}}},
		{"symlink", []tarEntry{{name: "evil", link: outside}, {name: "evil/pwned", body: "evil"}}},
	} {
		commit := strings.Repeat("ab", 19) + fmt.Sprintf("%02d", len(tc.name))
		e.putBlob(contracts.SourceKey(repo, commit), makeTar(t, tc.entries))
		a := e.assign("unsafe-"+tc.name, []string{`echo > "$OUT/ran"`}, func(a *contracts.Assignment) { a.Job.Commit = commit })
		wantStatus(t, e.disp.result(t, a), contracts.JobStatusError, "unsafe archive entry")
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); err == nil {
		t.Fatal("a file was written through a symlink")
	}
	if _, err := os.Stat(filepath.Join(e.out, "ran")); err == nil {
		t.Fatal("the script ran in a refused workspace")
	}
}

func TestContainerRunnerWithoutEngine(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	// No engine on the PATH (the scripts below need only sh's builtins).
	t.Setenv("PATH", t.TempDir())
	if _, err := executor.DetectEngine(context.Background()); err == nil {
		t.Fatal("an engine was found on an empty PATH")
	}
	e.startRunner(jobs.Options{Executor: jobs.ExecutorContainer})
	a := e.assign("img", []string{`echo > "$OUT/ran"`}, func(a *contracts.Assignment) { a.Job.Image = "alpine:3" })
	res := e.disp.result(t, a)
	wantStatus(t, res, contracts.JobStatusError, "runner r1 has no container engine (podman, docker): ")
	if _, err := os.Stat(filepath.Join(e.out, "ran")); err == nil {
		t.Fatal("an image job ran on the host")
	}
	if log, _ := e.logText("img"); !strings.Contains(log, "zeroci: runner r1 has no container engine") {
		t.Fatalf("log:\n%s", log)
	}
	// Jobs without an image run with the shell.
	b := e.assign("plain", []string{"true"}, nil)
	wantStatus(t, e.disp.result(t, b), contracts.JobStatusSuccess, "")
	if h := e.disp.hellos[0]; h.Executor != contracts.ExecutorContainer {
		t.Fatalf("hello %+v", h)
	}
}

// TestContainerRunnerRunsImageJob runs image jobs through a container
// runner and a real engine: the checkout is the container's workspace,
// the job's environment reaches it, what it writes becomes an artifact the
// next job (also in a container) restores, and a cancel stops it.
func TestContainerRunnerRunsImageJob(t *testing.T) {
	image := os.Getenv("ZEROCI_TEST_IMAGE")
	if _, err := executor.DetectEngine(context.Background()); err != nil {
		if image != "" {
			t.Fatalf("ZEROCI_TEST_IMAGE is set (.ci/run set up an engine) but: %v", err)
		}
		t.Skipf("no container engine on this machine: %v", err)
	}
	if image == "" {
		t.Skip("a container engine works here, but ZEROCI_TEST_IMAGE names no local image to run (this machine reaches no registry; .ci/run makes one)")
	}
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{Executor: jobs.ExecutorContainer})
	inImage := func(a *contracts.Assignment) { a.Job.Image = image }
	a := e.assign("make", []string{`echo "job $ZEROCI_JOB in $(pwd)"`, "cat README", "mkdir -p out", "echo made > out/file"}, func(a *contracts.Assignment) {
		inImage(a)
		a.Job.Artifacts = []contracts.ArtifactSpec{{ID: "out", Paths: []string{"out/"}}}
	})
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
	if log, _ := e.logText("make"); !strings.Contains(log, "job make in /workspace\nhello\n") {
		t.Fatalf("log:\n%s", log)
	}
	b := e.assign("use", []string{"cat out/file"}, func(a *contracts.Assignment) {
		inImage(a)
		a.Job.RestoreArtifacts = []string{"out"}
	})
	wantStatus(t, e.disp.result(t, b), contracts.JobStatusSuccess, "")
	if log, _ := e.logText("use"); !strings.Contains(log, "made\n") {
		t.Fatalf("log:\n%s", log)
	}
	c := e.assign("long", []string{"echo started", "sleep 300"}, inImage)
	eventually(t, 30*time.Second, "the long job's output", func() bool {
		log, _ := e.logText("long")
		return strings.Contains(log, "started")
	})
	e.disp.setCancel(c, "stop it")
	wantStatus(t, e.disp.result(t, c), contracts.JobStatusCanceled, "stop it")
}

func TestShellRunnerRunsImageJobOnHost(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	e.startRunner(jobs.Options{})
	a := e.assign("img", []string{"true"}, func(a *contracts.Assignment) { a.Job.Image = "alpine:3" })
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
}

func TestRehelloAfterNotFound(t *testing.T) {
	e := newEnv(t)
	var once sync.Once
	forget := make(chan struct{})
	m := e.disp.mux(t)
	// Answer the first request_work with not_found, as a scheduler that
	// forgot the runner does.
	inner := e.disp.requestWork
	rpc.Handle(m, func(ctx context.Context, req contracts.RequestWork) (contracts.Message, error) {
		first := false
		once.Do(func() { first = true; close(forget) })
		if first {
			return nil, contracts.NewError(contracts.CodeNotFound, "unknown runner")
		}
		return inner(ctx, req)
	})
	svc, err := m.Serve(e.client, contracts.ServiceDispatch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	e.startRunner(jobs.Options{})
	<-forget
	a := e.assign("after", []string{"true"}, nil)
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
	e.disp.mu.Lock()
	defer e.disp.mu.Unlock()
	if len(e.disp.hellos) < 2 {
		t.Fatalf("%d hellos, want a second after not_found", len(e.disp.hellos))
	}
}

// TestHeldAndRepeatedAssignments: every request lists the leases the
// runner holds; an assignment sent again after the runner started it (in
// this process, or an earlier one that left its workspace behind) is
// handed back, not run twice as one attempt.
func TestHeldAndRepeatedAssignments(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	dir := t.TempDir()
	stale := contracts.NewID(time.Now())
	if err := os.MkdirAll(filepath.Join(dir, "jobs", "work", stale.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	e.startRunnerIn(jobs.Options{}, dir)

	a := e.assign("slow", []string{"sleep 1"}, nil)
	e.disp.wait(t, 30*time.Second, "a request listing the running lease", func() bool {
		return slices.ContainsFunc(e.disp.held, func(h []contracts.ID) bool { return slices.Contains(h, a.LeaseID) })
	})
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
	e.disp.mu.Lock()
	n := len(e.disp.held)
	e.disp.mu.Unlock()
	e.disp.wait(t, 30*time.Second, "a request without the finished lease", func() bool {
		return slices.ContainsFunc(e.disp.held[n:], func(h []contracts.ID) bool { return !slices.Contains(h, a.LeaseID) })
	})
	e.disp.mu.Lock()
	delete(e.disp.results, a.LeaseID)
	e.disp.mu.Unlock()
	e.disp.add(t, a) // the scheduler sends it again
	res := e.disp.result(t, a)
	if !res.Requeue || res.Status != contracts.JobStatusError || !strings.Contains(res.Reason, "already started") {
		t.Fatalf("repeated assignment: %+v, want a hand-back", res)
	}

	b := e.assign("stale", []string{"touch $OUT/stale-ran"}, func(b *contracts.Assignment) { b.LeaseID = stale })
	res = e.disp.result(t, b)
	if !res.Requeue || !strings.Contains(res.Reason, "already started") {
		t.Fatalf("lease of a workspace left by an earlier process: %+v, want a hand-back", res)
	}
	if _, err := os.Stat(filepath.Join(e.out, "stale-ran")); err == nil {
		t.Fatal("the handed-back job ran")
	}
}

// TestRestartKillsLeftovers: a runner that starts where an earlier process
// of it was killed kills what that process's jobs left running (found by
// the lease in their environment, with their process group), and nothing
// else.
func TestRestartKillsLeftovers(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	dir := t.TempDir()
	lease := contracts.NewID(time.Now())
	if err := os.MkdirAll(filepath.Join(dir, "jobs", "work", lease.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	spawn := func(lease contracts.ID, script string, args ...string) (*exec.Cmd, chan struct{}) {
		cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
		cmd.Env = append(os.Environ(), "ZEROCI_LEASE="+lease.String())
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
		return cmd, done
	}
	// What a job of the killed process left: its shell, and a child that
	// dropped the variable, in the job's process group.
	pidFile := filepath.Join(e.out, "child.pid")
	_, leftover := spawn(lease, `env -u ZEROCI_LEASE sleep 300 & echo $! > "$1.tmp" && mv "$1.tmp" "$1"; exec sleep 300`, pidFile)
	child, err := strconv.Atoi(strings.TrimSpace(e.waitFile("child.pid")))
	if err != nil {
		t.Fatal(err)
	}
	// A job of another lease (another runner on the host) is not touched.
	other, _ := spawn(contracts.NewID(time.Now()), "exec sleep 300")

	e.startRunnerIn(jobs.Options{}, dir)
	eventually(t, 30*time.Second, "the leftover job killed", func() bool {
		select {
		case <-leftover:
			return proctest.Gone(child)
		default:
			return false
		}
	})
	if proctest.Gone(other.Process.Pid) {
		t.Fatal("the process of another lease was killed")
	}

	// Jobs carry their lease, which is how they are found.
	a := e.assign("lease", []string{`echo "$ZEROCI_LEASE" > "$OUT/lease"`}, nil)
	wantStatus(t, e.disp.result(t, a), contracts.JobStatusSuccess, "")
	if got := strings.TrimSpace(e.waitFile("lease")); got != a.LeaseID.String() {
		t.Fatalf("ZEROCI_LEASE %q, want %s", got, a.LeaseID)
	}
}

// TestOneRunnerPerDataDir: a second runner process on a data dir in use
// refuses to start (it would take the first one's workspaces for a dead
// process's, and share its runner id); once the first stops, it starts.
func TestOneRunnerPerDataDir(t *testing.T) {
	e := newEnv(t)
	e.serveDispatch()
	dir := t.TempDir()
	_, stop := e.startRunnerIn(jobs.Options{}, dir)
	second := jobs.New(jobs.Options{WaitMs: 100})
	node := e.net.Node()
	defer node.Close()
	err := second.Start(ctxT(t), moduletestHost(t, node, dir))
	if err == nil || !strings.Contains(err.Error(), "held by another runner process") {
		t.Fatalf("second runner on one data dir: %v", err)
	}
	stop()
	third := jobs.New(jobs.Options{WaitMs: 100})
	if err := third.Start(ctxT(t), moduletestHost(t, node, dir)); err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	if err := third.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []jobs.Options{
		{Capacity: -1}, {Capacity: 5000}, {Executor: "vm"}, {RunnerID: "-bad"}, {Labels: map[string]string{"a b": "c"}}, {StopTimeout: -time.Second},
	} {
		if err := o.Validate(); !errors.Is(err, jobs.ErrInvalidOptions) {
			t.Errorf("%+v: %v, want ErrInvalidOptions", o, err)
		}
	}
	if err := (jobs.Options{}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultRunnerIDStable(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ids := make([]string, 2)
	for i := range ids {
		node := e.net.Node()
		r := jobs.New(jobs.Options{WaitMs: 100})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := r.Start(ctx, moduletestHost(t, node, dir)); err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID()
		if err := r.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		node.Close()
	}
	if ids[0] != ids[1] || (contracts.RunnerHello{RunnerID: ids[0], Capacity: 1, Executor: contracts.ExecutorShell}).Validate() != nil {
		t.Fatalf("ids %q", ids)
	}
}
