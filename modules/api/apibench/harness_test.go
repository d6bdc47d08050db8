package apibench

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/internal/latency"
)

// TestReadsHarness fills a store with a few builds and runs every read
// harness briefly, over HTTP and over the transport; a wrong build or a
// missing repository fails it.
func TestReadsHarness(t *testing.T) {
	const total = 120
	ctx := runContext(t)
	s := startStack(t, false)
	if err := createRepo(ctx, s.tr, repoName, gitRepo(t, talkPipeline(t.TempDir(), 1))); err != nil {
		t.Fatal(err)
	}
	if err := fillBuilds(ctx, s.tr, repoName, total, 8); err != nil {
		t.Fatal(err)
	}
	if err := s.checkReads(ctx, repoName, total); err != nil {
		t.Fatal(err)
	}
	reads := map[string]readFn{
		"http-list": s.httpList(repoName), "http-show": s.httpShow(repoName, total),
		"rpc-list": s.rpcList(repoName), "rpc-show": s.rpcShow(repoName, total),
	}
	for name, read := range reads {
		rate, err := closedLoop(ctx, read, 4, 100*time.Millisecond)
		if err != nil || rate <= 0 {
			t.Fatalf("%s closed loop: %v reads/s, %v", name, rate, err)
		}
		lat, err := openLoop(ctx, read, 50, time.Millisecond)
		if err != nil || len(lat) != 50 || latency.PercentileMs(lat, 0.5) <= 0 {
			t.Fatalf("%s open loop: %d latencies, p50 %v ms, %v", name, len(lat), latency.PercentileMs(lat, 0.5), err)
		}
	}
	// A read that fails must fail the run: a build that does not exist.
	if _, err := closedLoop(ctx, s.httpShow(repoName, total+1000), 2, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("reading missing builds: %v", err)
	}
	if _, err := openLoop(ctx, s.rpcList("nope"), 5, time.Millisecond); err == nil {
		t.Fatal("listing a missing repository did not fail")
	}
}

// TestFollowersHarness runs the log-follower harness with 10 followers of
// 15 lines, over HTTP and directly.
func TestFollowersHarness(t *testing.T) {
	const lines, followers = 15, 10
	ctx := runContext(t)
	s := startStack(t, true)
	tk := newTalker(ctx, t, s, lines)
	for _, overHTTP := range []bool{true, false} {
		lat, err := tk.followRun(ctx, followers, overHTTP)
		if err != nil {
			t.Fatalf("http %v: %v", overHTTP, err)
		}
		if len(lat) != lines*followers {
			t.Fatalf("http %v: %d latencies, want %d", overHTTP, len(lat), lines*followers)
		}
		if p := latency.PercentileMs(lat, 0.5); p <= 0 || p > 10_000 {
			t.Fatalf("http %v: p50 %v ms", overHTTP, p)
		}
	}
}

// TestLineCheck shows that the follower check refuses a repeated, a
// skipped and a reordered line, and an incomplete log.
func TestLineCheck(t *testing.T) {
	now := time.Now()
	line := func(i int) string { return "line " + strconv.Itoa(i) + " " + strconv.FormatInt(now.UnixNano(), 10) }
	cases := []struct {
		name string
		ids  []int64
		text []string
		want string
	}{
		{"ok", []int64{1, 2, 3}, []string{line(1), "other", line(2)}, ""},
		{"repeated id", []int64{1, 1}, []string{line(1), line(2)}, "line id 1 after 1"},
		{"skipped id", []int64{1, 3}, []string{line(1), line(2)}, "line id 3 after 1"},
		{"reordered", []int64{1, 2}, []string{line(2), line(1)}, "talking line 2 after 0"},
		{"incomplete", []int64{1}, []string{line(1)}, "1 talking lines of 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lc := &lineCheck{want: 2}
			var err error
			for i := range c.ids {
				if err = lc.add(c.ids[i], c.text[i], now); err != nil {
					break
				}
			}
			if err == nil {
				err = lc.complete()
			}
			if c.want == "" && err != nil {
				t.Fatal(err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
