package schedbench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// TestThroughputHarness runs the builds/minute harness with 3 builds and
// one runner, and its shell baseline with 9 scripts.
func TestThroughputHarness(t *testing.T) {
	ctx := runContext(t)
	e := startInproc(t, false)
	w := prepare(ctx, t, e, threeJobPipeline, repoName)
	ks, err := queueBuilds(ctx, e, w, []string{repoName}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []buildKey{{repoName, 1}, {repoName, 2}, {repoName, 3}}; !slices.Equal(ks, want) {
		t.Fatalf("builds %v, want %v", ks, want)
	}
	if _, err := runBuilds(ctx, t, e, w, ks, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := shellBaseline(ctx, t, 9, 2); err != nil {
		t.Fatal(err)
	}
}

// TestLatencyHarness runs the trigger→running harness with 2 builds, in
// one process and with the runner in another process over tcp.
func TestLatencyHarness(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *engine{
		"inproc":    func(tb testing.TB) *engine { return startInproc(tb, true) },
		"split-tcp": startSplit,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := runContext(t)
			e := start(t)
			w := prepare(ctx, t, e, oneJobPipeline, repoName)
			l, err := measureLatency(ctx, e, w, 2)
			if err != nil {
				t.Fatal(err)
			}
			for i := range l.running {
				if l.trigger[i] <= 0 || l.queued[i] <= 0 || l.queued[i] > l.running[i] {
					t.Errorf("sample %d: trigger %v, queued %v, running %v", i, l.trigger[i], l.queued[i], l.running[i])
				}
			}
		})
	}
}

// TestCheckBuilds shows that the correctness check refuses a failed
// build, a job started twice, a retry and a missing job.
func TestCheckBuilds(t *testing.T) {
	ev := func(n int64, job string, p contracts.Message) contracts.Event {
		e, err := contracts.NewEvent(contracts.Subject{Repo: repoName, Build: n, Job: job}, p)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	good := func(n int64) []contracts.Event {
		return []contracts.Event{
			ev(n, "a", contracts.JobStarted{RunnerID: "r", Attempt: 1}),
			ev(n, "b", contracts.JobStarted{RunnerID: "r", Attempt: 1}),
			ev(n, "c", contracts.JobStarted{RunnerID: "r", Attempt: 1}),
			ev(n, "", contracts.BuildFinished{Status: contracts.BuildStatusSuccess}),
		}
	}
	cases := []struct {
		name  string
		extra []contracts.Event
		want  string
	}{
		{"ok", nil, ""},
		{"failed", []contracts.Event{ev(3, "", contracts.BuildFinished{Status: contracts.BuildStatusFailure})}, "build bench#3: failure"},
		{"twice", []contracts.Event{ev(3, "b", contracts.JobStarted{RunnerID: "r", Attempt: 1})}, "job b started 2 times"},
		{"retry", []contracts.Event{ev(3, "b", contracts.JobStarted{RunnerID: "r", Attempt: 2})}, "attempt 2"},
		{"missing", nil, "job c started 0 times"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &watcher{builds: map[buildKey]*buildSeen{}, changed: make(chan struct{})}
			for n := int64(1); n <= 3; n++ {
				evs := good(n)
				if c.name == "missing" && n == 2 {
					evs = append(evs[:2], evs[3])
				}
				for _, e := range append(evs, c.extra...) {
					if e.Build == n {
						if err := w.record(e); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			err := w.checkBuilds([]buildKey{{repoName, 1}, {repoName, 2}, {repoName, 3}}, threeJobs)
			if c.want == "" && err != nil {
				t.Fatalf("check: %v", err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("check: %v, want %q", err, c.want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if err := w.wait(ctx, "never", func(*watcher) bool { return false }); err == nil {
				t.Fatal("wait for a condition that never holds returned nil")
			}
		})
	}
}
