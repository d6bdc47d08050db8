package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/internal/proctest"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// pipelineFile is the pipeline of TestPipeline: lint and build run in
// parallel; fails fails and its dependent is skipped; slow runs long
// enough for its runner to be killed; deploy waits for approval; timeout
// forks a child that must die with it. %[1]s is the marker directory.
const pipelineFile = `env:
  MARKERS: %[1]s
jobs:
  lint:
    env: {TOKEN: {secret: token}}
    script: ['echo "token=$TOKEN"']
  build:
    inputs: ["src/**"]
    artifacts: [{id: app, paths: [out/]}]
    script: [mkdir -p out, "cat src/main.txt > out/app", echo built]
  fails:
    depends_on: [lint]
    script: [echo failing, exit 4]
  after-fails:
    depends_on: [fails]
    script: [echo never]
  slow:
    depends_on: [build]
    restore_artifacts: [app]
    script:
      - cat out/app
      - touch "$MARKERS/slow-$ZEROCI_BUILD_NUMBER-$ZEROCI_JOB"
      - sleep 4
      - echo slow done
  deploy:
    depends_on: [slow]
    manual: true
    script: [echo deployed]
  timeout:
    timeout: 2s
    script: ['sleep 300 & echo $! > "$MARKERS/child-$ZEROCI_BUILD_NUMBER"', wait]
`

// TestPipeline is issue 5's acceptance test, on the real binary: a
// scheduler process and runner processes over tcp, a runner killed with
// SIGKILL mid-job whose job a second runner finishes, a manual job
// approved, a timeout that kills a forked child, a second build that skips
// the input-hashed job, and `zeroci run` on the same directory with the
// same job results.
func TestPipeline(t *testing.T) {
	dir := t.TempDir()
	markers := filepath.Join(dir, "markers")
	if err := os.MkdirAll(markers, 0o755); err != nil {
		t.Fatal(err)
	}
	src := gittest.Repo(t, map[string]string{
		".zeroci/pipeline.yaml": fmt.Sprintf(pipelineFile, markers),
		"src/main.txt":          "the app\n",
	})

	// One key file for every process; endpoints on loopback.
	c := newCluster(t, dir, "buildscript: {allow_local: true, lease_timeout: 2s}\njobs: {capacity: 4, stop_timeout: 5s}\n")
	config := c.config
	env := cleanEnv()
	sched := start(t, "scheduler", dir, env, "server", "--config", config("sched"),
		"--modules", "eventhub,datastore,blob,logging,buildscript", "--http", "127.0.0.1:0")
	sched.logLine("scheduler ready", 60*time.Second)
	runner1 := start(t, "runner1", dir, env, "server", "--config", config("runner1"), "--modules", "jobs", "--http", "127.0.0.1:0")

	node := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	do := func(req contracts.Message) contracts.Build {
		t.Helper()
		b, err := rpc.Call[contracts.Build](ctx, node, req)
		if err != nil {
			t.Fatalf("%s: %v", req.MessageType(), err)
		}
		return b
	}
	if _, err := rpc.Call[contracts.Repo](ctx, node, contracts.CreateRepo{Name: "app", URL: src, DefaultBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.Call[contracts.OK](ctx, node, contracts.SetSecret{Repo: "app", Name: "token", Value: "s3cr3t-value"}); err != nil {
		t.Fatal(err)
	}
	n := do(contracts.TriggerBuild{Repo: "app", Ref: "main", Event: contracts.TriggerManual}).Number

	// Kill runner1 while it runs slow; runner2 finishes it.
	waitFile(t, ctx, filepath.Join(markers, fmt.Sprintf("slow-%d-slow", n)))
	runner1.signal(syscall.SIGKILL)
	runner1.wait(10 * time.Second)
	runner2 := start(t, "runner2", dir, env, "server", "--config", config("runner2"), "--modules", "jobs", "--http", "127.0.0.1:0")

	b := pollBuild(t, ctx, node, n, "deploy blocked after slow", func(b contracts.Build) bool {
		return jobStatus(b, "slow") == contracts.JobStatusSuccess && jobStatus(b, "deploy") == contracts.JobStatusBlocked
	})
	if j := findJob(b, "slow"); j.Attempt != 2 || j.RunnerID == "" {
		t.Fatalf("slow after its runner died: %+v", j)
	}
	do(contracts.ApproveJob{Repo: "app", Number: n, Job: "deploy", User: "it"})
	b = pollBuild(t, ctx, node, n, "final", func(b contracts.Build) bool { return b.Status.Terminal() })
	want := map[string]contracts.JobStatus{
		"lint": "success", "build": "success", "fails": "failure", "after-fails": "skipped",
		"slow": "success", "deploy": "success", "timeout": "failure",
	}
	checkJobs(t, b, want)
	if b.Status != contracts.BuildStatusFailure {
		t.Fatalf("build %s, want failure", b.Status)
	}
	if j := findJob(b, "timeout"); !strings.Contains(j.Reason, "timeout") {
		t.Fatalf("timeout job reason %q", j.Reason)
	}
	pidText, err := os.ReadFile(filepath.Join(markers, fmt.Sprintf("child-%d", n)))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if pid <= 0 || !proctest.Gone(pid) {
		t.Fatalf("the timed-out job's forked child %q is still alive", pidText)
	}
	lint := readLog(t, ctx, node, contracts.JobRef{Repo: "app", Build: n, Job: "lint"})
	if !strings.Contains(lint, "token=***") || strings.Contains(lint, "s3cr3t") {
		t.Fatalf("lint log does not mask the secret:\n%s", lint)
	}
	if slow := readLog(t, ctx, node, contracts.JobRef{Repo: "app", Build: n, Job: "slow"}); !strings.Contains(slow, "the app") || !strings.Contains(slow, "slow done") {
		t.Fatalf("slow log:\n%s", slow)
	}

	// A second build of the same commit skips build (unchanged inputs)
	// and slow still gets its artifact.
	n2 := do(contracts.TriggerBuild{Repo: "app", Ref: "main", Event: contracts.TriggerManual}).Number
	pollBuild(t, ctx, node, n2, "deploy blocked", func(b contracts.Build) bool { return jobStatus(b, "deploy") == contracts.JobStatusBlocked })
	do(contracts.ApproveJob{Repo: "app", Number: n2, Job: "deploy", User: "it"})
	b2 := pollBuild(t, ctx, node, n2, "final", func(b contracts.Build) bool { return b.Status.Terminal() })
	want2 := map[string]contracts.JobStatus{}
	for k, v := range want {
		want2[k] = v
	}
	want2["build"] = "skipped"
	checkJobs(t, b2, want2)
	if r := findJob(b2, "build").Reason; r != fmt.Sprintf("unchanged since build %d", n) {
		t.Fatalf("build job of the second build: %q", r)
	}
	if slow := readLog(t, ctx, node, contracts.JobRef{Repo: "app", Build: n2, Job: "slow"}); !strings.Contains(slow, "the app") {
		t.Fatalf("slow did not restore the reused artifact:\n%s", slow)
	}

	for _, p := range []*proc{runner2, sched} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(60 * time.Second); code != 0 {
			t.Errorf("%s exit %d after SIGTERM", p.name, code)
		}
	}

	// zeroci run on the same directory gives the same job results.
	run := exec.CommandContext(ctx, binary, "run", "--dir", src, "--secret", "token=s3cr3t-value")
	run.Env = cleanEnv()
	var stdout, stderr strings.Builder
	run.Stdout, run.Stderr = &stdout, &stderr
	err = run.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("zeroci run: %v, want exit 1 (a job fails)\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for id, st := range want {
		if !hasSummaryLine(stderr.String(), id, string(st)) {
			t.Errorf("zeroci run: no %q %s line in the summary:\n%s", id, st, stderr.String())
		}
	}
	if strings.Contains(stdout.String(), "s3cr3t") {
		t.Errorf("zeroci run printed the secret:\n%s", stdout.String())
	}
	for _, line := range []string{"[lint] token=***", "[slow] the app", "[fails] failing", "[deploy] deployed"} {
		if !strings.Contains(stdout.String(), line) {
			t.Errorf("zeroci run output lacks %q:\n%s", line, stdout.String())
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitFile(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	waitFor(t, ctx, path, func() bool { return fileExists(path) })
}

func pollBuild(t *testing.T, ctx context.Context, node transport.Transport, n int64, what string, ok func(contracts.Build) bool) contracts.Build {
	t.Helper()
	var last contracts.Build
	waitFor(t, ctx, fmt.Sprintf("build %d: %s (last: %+v)", n, what, &last), func() bool {
		b, err := rpc.Call[contracts.Build](ctx, node, contracts.GetBuild{Repo: "app", Number: n})
		if err != nil {
			return false
		}
		last = b
		return ok(b)
	})
	return last
}

func findJob(b contracts.Build, id string) contracts.Job {
	for _, j := range b.Jobs {
		if j.ID == id {
			return j
		}
	}
	return contracts.Job{}
}

func jobStatus(b contracts.Build, id string) contracts.JobStatus { return findJob(b, id).Status }

func checkJobs(t *testing.T, b contracts.Build, want map[string]contracts.JobStatus) {
	t.Helper()
	for id, st := range want {
		if got := findJob(b, id); got.Status != st {
			t.Errorf("build %d job %s: %s (%q), want %s", b.Number, id, got.Status, got.Reason, st)
		}
	}
}

func readLog(t *testing.T, ctx context.Context, node transport.Transport, job contracts.JobRef) string {
	t.Helper()
	var b strings.Builder
	if err := logclient.Follow(ctx, node, job, 1, func(l contracts.LogLine) error {
		b.WriteString(l.Text + "\n")
		return nil
	}); err != nil {
		t.Fatalf("log of %s: %v", job, err)
	}
	return b.String()
}

// hasSummaryLine reports whether zeroci run's summary has a line for job
// with status.
func hasSummaryLine(out, job, status string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == job && strings.TrimRight(f[1], ":") == status {
			return true
		}
	}
	return false
}
