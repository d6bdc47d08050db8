package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/modules/rpc"
)

// TestSchedulerSIGKILL kills the scheduler's process (SIGKILL) while jobs
// run and another waits in the queue, and starts it again: the running
// jobs keep their leases (their runner goes on renewing them) and finish
// once, the queued one runs, and every build ends in success with each job
// run exactly once.
func TestSchedulerSIGKILL(t *testing.T) {
	dir := t.TempDir()
	markers := filepath.Join(dir, "markers")
	if err := os.MkdirAll(markers, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each run of a job leaves a file named after the build, job and attempt.
	src := gittest.PipelineRepo(t, fmt.Sprintf(`env: {MARKERS: %s}
jobs:
  first:
    script: ['touch "$MARKERS/$ZEROCI_BUILD_NUMBER-$ZEROCI_JOB-$$"', 'while [ ! -e "$MARKERS/go" ]; do sleep 0.05; done']
  second:
    depends_on: [first]
    script: ['touch "$MARKERS/$ZEROCI_BUILD_NUMBER-$ZEROCI_JOB-$$"']
`, markers))

	c := newCluster(t, dir, "buildscript: {allow_local: true, lease_timeout: 15s}\njobs: {capacity: 2}\n")
	config := c.config
	env := cleanEnv()
	core := start(t, "core", dir, env, "server", "--config", config("core"),
		"--modules", "eventhub,datastore,blob,logging", "--http", "127.0.0.1:0")
	core.logLine("data store started", 60*time.Second)
	startSched := func(name string) *proc {
		p := start(t, name, dir, env, "server", "--config", config("sched"), "--modules", "buildscript", "--http", "127.0.0.1:0")
		p.logLine("scheduler ready", 60*time.Second)
		return p
	}
	sched := startSched("scheduler")
	runner := start(t, "runner", dir, env, "server", "--config", config("runner"), "--modules", "jobs", "--http", "127.0.0.1:0")

	node := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := rpc.Call[contracts.Repo](ctx, node, contracts.CreateRepo{Name: "app", URL: src, DefaultBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	// Capacity 2 and three builds: two `first` jobs run, one waits queued.
	for range 3 {
		if _, err := rpc.Call[contracts.Build](ctx, node, contracts.TriggerBuild{Repo: "app", Event: contracts.TriggerManual}); err != nil {
			t.Fatal(err)
		}
	}
	running := map[int64]bool{} // builds whose first job runs at the kill
	waitFor(t, ctx, "two first jobs running and one queued", func() bool {
		clear(running)
		queued := 0
		for n := int64(1); n <= 3; n++ {
			b, err := rpc.Call[contracts.Build](ctx, node, contracts.GetBuild{Repo: "app", Number: n})
			if err != nil {
				return false
			}
			switch jobStatus(b, "first") {
			case contracts.JobStatusRunning:
				running[n] = true
			case contracts.JobStatusQueued:
				queued++
			}
		}
		return len(running) == 2 && queued == 1
	})

	sched.signal(syscall.SIGKILL)
	sched.wait(10 * time.Second)
	sched = startSched("scheduler (restarted)")
	writeFile(t, filepath.Join(markers, "go"), "")

	for n := int64(1); n <= 3; n++ {
		b := pollBuild(t, ctx, node, n, "final", func(b contracts.Build) bool { return b.Status.Terminal() })
		if b.Status != contracts.BuildStatusSuccess {
			t.Fatalf("build %d: %s %+v", n, b.Status, b.Jobs)
		}
		// A running job keeps its lease across the restart. (A queued job
		// handed out just as the restart cut the runner's request off can
		// come back as attempt 2 once that lease lapses; it still runs
		// once, which the markers check.)
		if j := findJob(b, "first"); running[n] && j.Attempt != 1 {
			t.Errorf("build %d: the running job first ended as attempt %d: the restart lost its lease", n, j.Attempt)
		}
	}
	entries, err := os.ReadDir(markers)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, e := range entries {
		if name := e.Name(); name != "go" {
			runs[name[:strings.LastIndex(name, "-")]]++
		}
	}
	for n := 1; n <= 3; n++ {
		for _, job := range []string{"first", "second"} {
			if got := runs[fmt.Sprintf("%d-%s", n, job)]; got != 1 {
				t.Errorf("build %d job %s ran %d times, want once (%v)", n, job, got, runs)
			}
		}
	}
	for _, p := range []*proc{runner, sched, core} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(60 * time.Second); code != 0 {
			t.Errorf("%s exit %d after SIGTERM", p.name, code)
		}
	}
}
