package buildscript_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/buildscript"
	"github.com/zeroci/zeroci/modules/rpc"
)

const graph = `
jobs:
  a:
    script: [echo a]
  b:
    depends_on: [a]
    script: [echo b]
  c:
    depends_on: [a]
    script: [exit 1]
  d:
    depends_on: [c]
    script: [echo d]
  deploy:
    depends_on: [b]
    manual: true
    labels: {env: prod}
    script: [./deploy.sh]
`

// TestGraph runs a build through the DAG: parallel jobs, a failure whose
// dependent is skipped, a manual job approved and handed only to a runner
// with its labels.
func TestGraph(t *testing.T) {
	e := newEnv(t, buildscript.Options{})
	commit := e.commit(map[string]string{".zeroci/pipeline.yaml": graph})
	e.addRepo("app")
	n := e.trigger("app")
	r := e.runner("r1", nil)

	a := r.take()
	if a.Job.Job.Job != "a" || a.Job.Commit != commit || a.Attempt != 1 || a.MaxAttempts != 1 {
		t.Fatalf("first assignment %+v", a)
	}
	if !slices.Equal(a.Job.Script, []string{"echo a"}) || a.Job.Env["ZEROCI_REPO"] != "" {
		t.Fatalf("spec %+v", a.Job)
	}
	b := e.waitBuild("app", n, "a running", jobIs("a", contracts.JobStatusRunning))
	if b.Status != contracts.BuildStatusRunning || b.Commit != commit || jobOf(b, "b").Reason != "waiting for a" {
		t.Fatalf("build %s", describe(b))
	}
	// The source archive is there for the runners.
	if _, err := blobclient.Stat(context.Background(), e.tr, contracts.SourceKey("app", commit)); err != nil {
		t.Fatal(err)
	}
	r.finish(a, contracts.JobStatusSuccess, 0)
	// b and c are independent: both are handed out before either ends.
	first, second := r.take(), r.take()
	got := []string{first.Job.Job.Job, second.Job.Job.Job}
	slices.Sort(got)
	if !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("after a: %v", got)
	}
	for _, x := range []contracts.Assignment{first, second} {
		if x.Job.Job.Job == "c" {
			r.finish(x, contracts.JobStatusFailure, 1)
		} else {
			r.finish(x, contracts.JobStatusSuccess, 0)
		}
	}
	b = e.waitBuild("app", n, "d skipped", jobIs("d", contracts.JobStatusSkipped))
	if d := jobOf(b, "d"); !strings.Contains(d.Reason, "c did not succeed") {
		t.Fatalf("d: %+v", d)
	}
	if dep := jobOf(b, "deploy"); dep.Status != contracts.JobStatusBlocked || b.Status != contracts.BuildStatusRunning {
		t.Fatalf("deploy should wait for approval: %s", describe(b))
	}
	r.none(100 * time.Millisecond)

	call[contracts.Build](e, contracts.ApproveJob{Repo: "app", Number: n, Job: "deploy", User: "alice"})
	r.none(300 * time.Millisecond) // r1 lacks env: prod
	b = e.waitBuild("app", n, "a reason", func(b contracts.Build) bool {
		return jobOf(b, "deploy").Reason == "no runner with labels {env: prod}"
	})
	prod := e.runner("prod1", map[string]string{"env": "prod", "arch": "amd64"})
	dep := prod.take()
	if dep.Job.Job.Job != "deploy" {
		t.Fatalf("prod runner got %+v", dep.Job.Job)
	}
	prod.finish(dep, contracts.JobStatusSuccess, 0)
	b = e.waitBuild("app", n, "failure", buildIs(contracts.BuildStatusFailure))
	want := map[string]contracts.JobStatus{"a": "success", "b": "success", "c": "failure", "d": "skipped", "deploy": "success"}
	for id, st := range want {
		if jobOf(b, id).Status != st {
			t.Fatalf("%s: %s", id, describe(b))
		}
	}
}

// TestLostLease re-queues the job of a runner that stops renewing; the
// old attempt's renewals and results are refused.
func TestLostLease(t *testing.T) {
	e := newEnv(t, buildscript.Options{LeaseTimeout: time.Second})
	e.commit(map[string]string{".zeroci/pipeline.yaml": "jobs:\n  only:\n    script: [sleep 100]\n    retries: 1\n"})
	e.addRepo("app")
	n := e.trigger("app")
	dead := e.runner("dead", nil)
	first := dead.take()
	if first.MaxAttempts != 2 {
		t.Fatalf("max attempts %d, want 2 (one retry)", first.MaxAttempts)
	}
	if l, err := dead.renew(first); err != nil || l.Cancel {
		t.Fatalf("renew: %+v, %v", l, err)
	}
	// dead stops renewing; after the lease the job goes to another runner.
	live := e.runner("live", nil)
	second := live.take()
	if second.Attempt != 2 || second.LeaseID == first.LeaseID || second.MaxAttempts != 3 {
		t.Fatalf("second assignment %+v (first %+v)", second, first)
	}
	if _, err := dead.renew(first); contracts.CodeOf(err) != contracts.CodeConflict {
		t.Fatalf("renewing a lost lease: %v, want conflict", err)
	}
	if err := dead.report(first, contracts.JobStatusSuccess, 0); contracts.CodeOf(err) != contracts.CodeConflict {
		t.Fatalf("late result: %v, want conflict", err)
	}
	live.finish(second, contracts.JobStatusSuccess, 0)
	live.finish(second, contracts.JobStatusSuccess, 0) // a repeat is harmless
	b := e.waitBuild("app", n, "success", buildIs(contracts.BuildStatusSuccess))
	if j := jobOf(b, "only"); j.Attempt != 2 || j.RunnerID != "live" {
		t.Fatalf("job %+v", j)
	}
}

// TestRetries runs a failing job again while it has retries.
func TestRetries(t *testing.T) {
	e := newEnv(t, buildscript.Options{})
	e.commit(map[string]string{".zeroci/pipeline.yaml": "jobs:\n  flaky:\n    script: [x]\n    retries: 2\n"})
	e.addRepo("app")
	n := e.trigger("app")
	r := e.runner("r1", nil)
	for attempt := 1; attempt <= 3; attempt++ {
		a := r.take()
		if a.Attempt != attempt || a.MaxAttempts != 3 {
			t.Fatalf("attempt %d: %+v", attempt, a)
		}
		r.finish(a, contracts.JobStatusFailure, 2)
	}
	b := e.waitBuild("app", n, "failure", buildIs(contracts.BuildStatusFailure))
	if j := jobOf(b, "flaky"); j.Attempt != 3 || j.ExitCode == nil || *j.ExitCode != 2 {
		t.Fatalf("job %+v", j)
	}
}

// TestCancel stops a running job through its lease and skips the rest.
func TestCancel(t *testing.T) {
	e := newEnv(t, buildscript.Options{})
	e.commit(map[string]string{".zeroci/pipeline.yaml": "jobs:\n  long:\n    script: [sleep 100]\n  after:\n    depends_on: [long]\n    script: [echo]\n"})
	e.addRepo("app")
	n := e.trigger("app")
	r := e.runner("r1", nil)
	a := r.take()
	e.waitBuild("app", n, "long running", jobIs("long", contracts.JobStatusRunning))
	call[contracts.Build](e, contracts.CancelBuild{Repo: "app", Number: n, User: "bob"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := r.renew(a)
		if err != nil {
			t.Fatal(err)
		}
		if l.Cancel {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease never said cancel")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.finish(a, contracts.JobStatusCanceled, 0)
	b := e.waitBuild("app", n, "canceled", buildIs(contracts.BuildStatusCanceled))
	if jobOf(b, "after").Status != contracts.JobStatusCanceled || jobOf(b, "long").Status != contracts.JobStatusCanceled {
		t.Fatalf("%s", describe(b))
	}
}

// TestInvalidPipeline fails the build at once with FILE:LINE.
func TestInvalidPipeline(t *testing.T) {
	e := newEnv(t, buildscript.Options{})
	e.commit(map[string]string{".zeroci/pipeline.yaml": "jobs:\n  a:\n    scirpt: [x]\n"})
	e.addRepo("app")
	n := e.trigger("app")
	b := e.waitBuild("app", n, "error", buildIs(contracts.BuildStatusError))
	if !strings.Contains(b.Error, "pipeline.yaml:3:") || !strings.Contains(b.Error, "scirpt") {
		t.Fatalf("error %q", b.Error)
	}
	e.commit(map[string]string{".zeroci/pipeline.yaml": ""})
	e.git("rm", "-q", ".zeroci/pipeline.yaml")
	e.git("commit", "-q", "-m", "gone")
	n = e.trigger("app")
	if b := e.waitBuild("app", n, "error", buildIs(contracts.BuildStatusError)); !strings.Contains(b.Error, "no pipeline file") {
		t.Fatalf("error %q", b.Error)
	}
}

// TestRestart stops the scheduler with a job running and one queued; the
// new scheduler accepts the old lease and hands out the queued job.
func TestRestart(t *testing.T) {
	e := newEnv(t, buildscript.Options{LeaseTimeout: 2 * time.Second})
	e.commit(map[string]string{".zeroci/pipeline.yaml": "jobs:\n  one:\n    script: [x]\n  two:\n    script: [y]\n"})
	e.addRepo("app")
	n := e.trigger("app")
	r := e.runner("r1", nil)
	a := r.take()
	e.waitBuild("app", n, "the other queued", func(b contracts.Build) bool {
		return jobOf(b, "one").Status == contracts.JobStatusQueued || jobOf(b, "two").Status == contracts.JobStatusQueued
	})
	e.stopSc()
	e.startScheduler()
	if _, err := r.renew(a); err != nil {
		t.Fatalf("renewing a lease from before the restart: %v", err)
	}
	r.hello() // the new scheduler does not know the runner until hello
	other := r.take()
	if other.Job.Job.Job == a.Job.Job.Job {
		t.Fatalf("the running job was handed out again: %+v", other)
	}
	r.finish(a, contracts.JobStatusSuccess, 0)
	r.finish(other, contracts.JobStatusSuccess, 0)
	e.waitBuild("app", n, "success", buildIs(contracts.BuildStatusSuccess))
}

// TestLostAssignment sends an assignment again, with its lease and
// attempt, to the runner it was recorded for when that runner does not hold
// it: its answer was lost, before and after a scheduler restart.
func TestLostAssignment(t *testing.T) {
	e := newEnv(t, buildscript.Options{LeaseTimeout: 5 * time.Second})
	e.commit(map[string]string{".zeroci/pipeline.yaml": "jobs:\n  one:\n    script: [x]\n  two:\n    depends_on: [one]\n    script: [y]\n"})
	e.addRepo("app")
	n := e.trigger("app")
	r := e.runner("r1", nil)
	a := r.take()
	r.none(50 * time.Millisecond) // holding it: nothing more to do
	r.drop(a)                     // the answer never reached the runner
	again := r.take()
	if again.LeaseID != a.LeaseID || again.Attempt != 1 || again.Job.Job != a.Job.Job {
		t.Fatalf("sent again: %+v, want lease %s attempt 1 of %s", again, a.LeaseID, a.Job.Job)
	}
	if other := e.runner("r2", nil); len(other.request(4, 50*time.Millisecond).Assignments) != 0 {
		t.Fatal("another runner was given the lost assignment")
	}

	r.drop(a)
	e.stopSc()
	e.startScheduler()
	r.hello()
	again = r.take()
	if again.LeaseID != a.LeaseID || again.Attempt != 1 {
		t.Fatalf("after a restart: %+v, want lease %s attempt 1", again, a.LeaseID)
	}
	r.finish(again, contracts.JobStatusSuccess, 0)
	next := r.take()
	if next.Job.Job.Job != "two" || next.Attempt != 1 {
		t.Fatalf("after one: %+v", next)
	}
	r.finish(next, contracts.JobStatusSuccess, 0)
	b := e.waitBuild("app", n, "success", buildIs(contracts.BuildStatusSuccess))
	if j := jobOf(b, "one"); j.Attempt != 1 || j.RunnerID != "r1" {
		t.Fatalf("one: %+v, want attempt 1 on r1", j)
	}
}

// TestCancelWhileRecordingRunning cancels a build while the scheduler
// waits for the data store's answer to recording a job running (which the
// data store applied): the job is not over, so the build waits for its
// runner, which is told to cancel, and then ends canceled.
func TestCancelWhileRecordingRunning(t *testing.T) {
	e := newEnv(t, buildscript.Options{LeaseTimeout: 5 * time.Second})
	e.stopSc()
	g := e.startGatedScheduler()
	e.commit(map[string]string{".zeroci/pipeline.yaml": "jobs:\n  one:\n    script: [x]\n  gate:\n    depends_on: [one]\n    manual: true\n    script: [y]\n"})
	e.addRepo("app")
	g.holdWhen(func(env contracts.Envelope) bool {
		var u contracts.UpdateJob
		return env.Type == contracts.TypeUpdateJob && env.Decode(&u) == nil && u.Status == contracts.JobStatusRunning
	})
	n := e.trigger("app")
	r := e.runner("r1", nil)
	type answer struct {
		w   contracts.Work
		err error
	}
	taken := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		w, err := rpcWork(ctx, e, contracts.RequestWork{RunnerID: "r1", Free: 1, WaitMs: 20_000})
		taken <- answer{w, err}
	}()
	<-g.held
	if b := call[contracts.Build](e, contracts.CancelBuild{Repo: "app", Number: n, User: "admin"}); b.Status.Terminal() {
		t.Fatalf("canceled with a job running: %s", describe(b))
	}
	// The scheduler hears of the cancel while its record waits; it must
	// not end (and forget) the build then.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if st := call[contracts.Stats](e, contracts.GetStats{}); st.Builds == 0 {
			t.Fatal("the scheduler ended the build while its job was being recorded running")
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.open()
	got := <-taken
	if got.err != nil || len(got.w.Assignments) != 1 {
		t.Fatalf("request_work: %+v, %v; want the job", got.w, got.err)
	}
	a := got.w.Assignments[0]
	if l, err := r.renew(a); err != nil || !l.Cancel {
		t.Fatalf("renewal: %+v, %v; want cancel", l, err)
	}
	r.finish(a, contracts.JobStatusCanceled, 0)
	b := e.waitBuild("app", n, "canceled", buildIs(contracts.BuildStatusCanceled))
	if j := jobOf(b, "one"); j.Status != contracts.JobStatusCanceled {
		t.Fatalf("one: %+v", j)
	}
}

// TestInputSkip skips a job whose inputs did not change since a
// successful run, and runs it again when one input changes.
func TestInputSkip(t *testing.T) {
	e := newEnv(t, buildscript.Options{})
	pipe := `
jobs:
  gen:
    script: [make gen]
    inputs: ["src/**"]
    artifacts: [{id: out, paths: [out/]}]
  use:
    depends_on: [gen]
    restore_artifacts: [out]
    inputs: ["src/**", docs.md]
    script: [cat out/x]
  always:
    depends_on: [gen]
    script: [echo]
`
	e.commit(map[string]string{".zeroci/pipeline.yaml": pipe, "src/a.go": "package a\n", "docs.md": "v1\n"})
	e.addRepo("app")
	r := e.runner("r1", nil)
	ctx := context.Background()
	runAll := func(n int64) []string {
		var ran []string
		for {
			b := e.getBuild("app", n)
			if b.Status.Terminal() {
				return ran
			}
			w := call[contracts.Work](e, contracts.RequestWork{RunnerID: "r1", Free: 4, WaitMs: 50})
			for _, a := range w.Assignments {
				ran = append(ran, a.Job.Job.Job)
				if a.Job.Job.Job == "gen" { // the runner stores the artifact
					if _, err := blobclient.Put(ctx, e.tr, contracts.ArtifactKey("app", n, "out"), "application/gzip", strings.NewReader("tarball")); err != nil {
						t.Fatal(err)
					}
				}
				r.finish(a, contracts.JobStatusSuccess, 0)
			}
		}
	}
	if ran := runAll(e.trigger("app")); len(ran) != 3 {
		t.Fatalf("first build ran %v", ran)
	}
	n := e.trigger("app")
	ran := runAll(n)
	slices.Sort(ran)
	if !slices.Equal(ran, []string{"always"}) {
		t.Fatalf("unchanged build ran %v, want only always", ran)
	}
	b := e.getBuild("app", n)
	if b.Status != contracts.BuildStatusSuccess || jobOf(b, "gen").Reason != "unchanged since build 1" || jobOf(b, "use").Status != contracts.JobStatusSkipped {
		t.Fatalf("%s", describe(b))
	}
	if _, err := blobclient.Stat(ctx, e.tr, contracts.ArtifactKey("app", n, "out")); err != nil {
		t.Fatalf("the skipped job's artifact was not reused: %v", err)
	}
	e.commit(map[string]string{"docs.md": "v2\n"})
	ran = runAll(e.trigger("app"))
	slices.Sort(ran)
	if !slices.Equal(ran, []string{"always", "use"}) {
		t.Fatalf("after a docs change ran %v, want always and use", ran)
	}
}

// TestBadRunnerRequests get clear errors, not work.
func TestBadRunnerRequests(t *testing.T) {
	e := newEnv(t, buildscript.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := rpcWork(ctx, e, contracts.RequestWork{RunnerID: "stranger", Free: 1}); contracts.CodeOf(err) != contracts.CodeNotFound {
		t.Fatalf("request_work before hello: %v, want not_found", err)
	}
	r := e.runner("r1", nil)
	if _, err := r.renew(contracts.Assignment{LeaseID: contracts.NewID(time.Now())}); contracts.CodeOf(err) != contracts.CodeConflict {
		t.Fatalf("renew of an unknown lease: %v, want conflict", err)
	}
}

// TestWhenParamsAndHandBack: a job whose when does not hold is skipped
// with its dependents; params reach the env without overriding the job's
// own; a job handed back by a stopping runner runs again without using a
// retry.
func TestWhenParamsAndHandBack(t *testing.T) {
	e := newEnv(t, buildscript.Options{})
	e.commit(map[string]string{".zeroci/pipeline.yaml": `
env: {LEVEL: pipeline, MODE: pipeline}
jobs:
  release:
    when: {branch: ["release/*"]}
    script: [echo release]
  after-release:
    depends_on: [release]
    script: [echo after]
  work:
    env: {MODE: job}
    script: [echo work]
`})
	e.addRepo("app")
	b := call[contracts.Build](e, contracts.TriggerBuild{Repo: "app", Ref: "main", Event: contracts.TriggerManual,
		Params: map[string]string{"LEVEL": "param", "MODE": "param", "EXTRA": "x"}})
	r := e.runner("r1", nil)
	a := r.take()
	if a.Job.Job.Job != "work" {
		t.Fatalf("got %s, want work (release does not run on main)", a.Job.Job.Job)
	}
	if env := a.Job.Env; env["LEVEL"] != "param" || env["MODE"] != "job" || env["EXTRA"] != "x" {
		t.Fatalf("env %v: params override the pipeline's env, not the job's", env)
	}
	now := time.Now().UTC()
	if _, err := rpcResult(e, contracts.JobResult{RunnerID: "r1", LeaseID: a.LeaseID, Job: a.Job.Job, Attempt: 1,
		Status: contracts.JobStatusError, Reason: "runner r1 stopped before the job finished; handed back", Requeue: true,
		StartedAt: now, FinishedAt: now}); err != nil {
		t.Fatal(err)
	}
	again := r.take()
	if again.Attempt != 2 || again.MaxAttempts != 2 || again.Job.Job.Job != "work" {
		t.Fatalf("after a hand-back: %+v", again)
	}
	r.finish(again, contracts.JobStatusSuccess, 0)
	got := e.waitBuild("app", b.Number, "success", buildIs(contracts.BuildStatusSuccess))
	if j := jobOf(got, "release"); j.Status != contracts.JobStatusSkipped || !strings.Contains(j.Reason, "when") {
		t.Fatalf("release: %+v", j)
	}
	if j := jobOf(got, "after-release"); j.Status != contracts.JobStatusSkipped || !strings.Contains(j.Reason, "release was skipped") {
		t.Fatalf("after-release: %+v", j)
	}
}

func rpcResult(e *env, res contracts.JobResult) (contracts.OK, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rpc.Call[contracts.OK](ctx, e.tr, res)
}
