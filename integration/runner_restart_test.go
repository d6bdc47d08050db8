package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/internal/proctest"
	"github.com/zeroci/zeroci/modules/rpc"
)

// TestRunnerRestartAfterSIGKILL kills a runner's process (SIGKILL) while
// its job runs a forked child, and starts it again on the same data dir:
// the new process kills what the job left running, hands the job back
// when the scheduler sends it again (its lease is still live: the lease
// time is long), and the job's next attempt runs at once.
func TestRunnerRestartAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	markers := filepath.Join(dir, "markers")
	if err := os.MkdirAll(markers, 0o755); err != nil {
		t.Fatal(err)
	}
	// The first run forks a long child and waits; the second finishes.
	src := gittest.PipelineRepo(t, fmt.Sprintf(`env: {MARKERS: %s}
jobs:
  work:
    script:
      - 'if [ -e "$MARKERS/ran" ]; then echo second run; exit 0; fi'
      - 'touch "$MARKERS/ran"'
      - 'sleep 300 & echo $! > "$MARKERS/child.tmp" && mv "$MARKERS/child.tmp" "$MARKERS/child"'
      - wait
`, markers))
	const lease = 120 * time.Second
	c := newCluster(t, dir, fmt.Sprintf("buildscript: {allow_local: true, lease_timeout: %s}\n", lease))
	env := cleanEnv()
	core := start(t, "core", dir, env, "server", "--config", c.config("core"),
		"--modules", "eventhub,datastore,blob,logging,buildscript", "--http", "127.0.0.1:0")
	core.logLine("scheduler ready", 60*time.Second)
	runnerConfig := c.config("runner")
	runner := start(t, "runner", dir, env, "server", "--config", runnerConfig, "--modules", "jobs", "--http", "127.0.0.1:0")

	node := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := rpc.Call[contracts.Repo](ctx, node, contracts.CreateRepo{Name: "app", URL: src, DefaultBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	b, err := rpc.Call[contracts.Build](ctx, node, contracts.TriggerBuild{Repo: "app", Event: contracts.TriggerManual})
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, ctx, filepath.Join(markers, "child"))
	raw, err := os.ReadFile(filepath.Join(markers, "child"))
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}

	runner.signal(syscall.SIGKILL)
	runner.wait(10 * time.Second)
	if proctest.Gone(child) {
		t.Fatal("the job's child died with its runner: nothing left to reap, the test proves nothing")
	}
	restarted := time.Now()
	runner = start(t, "runner (restarted)", dir, env, "server", "--config", runnerConfig, "--modules", "jobs", "--http", "127.0.0.1:0")
	waitFor(t, ctx, "the killed job's child killed", func() bool { return proctest.Gone(child) })
	got := pollBuild(t, ctx, node, b.Number, "final", func(b contracts.Build) bool { return b.Status.Terminal() })
	// The next attempt runs at once: not after the lease (120s), nor
	// after a whole poll wait of the runner (10s), which is what it took
	// when the killed process's pending request, still parked in the
	// scheduler, was given the new attempt.
	if took := time.Since(restarted); got.Status != contracts.BuildStatusSuccess || findJob(got, "work").Attempt != 2 || took > 8*time.Second {
		t.Fatalf("after the restart (%v): %s %+v; want success at attempt 2 within 8s", took, got.Status, got.Jobs)
	}
	if log := readLog(t, ctx, node, contracts.JobRef{Repo: "app", Build: b.Number, Job: "work"}); !strings.Contains(log, "second run") {
		t.Fatalf("log:\n%s", log)
	}
	for _, p := range []*proc{runner, core} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(60 * time.Second); code != 0 {
			t.Errorf("%s exit %d after SIGTERM", p.name, code)
		}
	}
}
