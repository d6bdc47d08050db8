package apibench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zeroci/zeroci/internal/latency"
)

// Sizes of the benchmarks.
const (
	storeBuilds    = 10_000                 // builds in the store for the reads
	fillClients    = 32                     // concurrent trigger requests while filling it
	closedFor      = 2 * time.Second        // one closed-loop run (each side)
	openRate       = 1000                   // requests/s of the open-loop runs
	openFor        = 5 * time.Second        // one open-loop run (each side)
	openInterval   = time.Second / openRate // between two scheduled sends
	logLines       = 200                    // lines the followed job prints
	logFollowers   = 500                    // concurrent followers of its log
	warmupFollower = 1                      // followers of the warm-up build
)

// BenchmarkReads reads builds over the HTTP API from a store of 10,000
// builds, closed-loop (requests/s) and open-loop at 1,000 requests/s
// (latency), beside the same reads as transport requests to the data
// store (see the package doc).
func BenchmarkReads(b *testing.B) {
	ctx := runContext(b)
	s := startStack(b, false)
	if err := createRepo(ctx, s.tr, repoName, gitRepo(b, talkPipeline(b.TempDir(), 1))); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := fillBuilds(ctx, s.tr, repoName, storeBuilds, fillClients); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d builds triggered in %v", storeBuilds, time.Since(t0).Round(time.Millisecond))
	if err := s.checkReads(ctx, repoName, storeBuilds); err != nil {
		b.Fatal(err)
	}
	kinds := []struct {
		name      string
		http, rpc readFn
	}{
		{"list", s.httpList(repoName), s.rpcList(repoName)},
		{"show", s.httpShow(repoName, storeBuilds), s.rpcShow(repoName, storeBuilds)},
	}
	for _, k := range kinds {
		// Warm up: connections, the token cache, the store's pages.
		for _, read := range []readFn{k.http, k.rpc} {
			if _, err := closedLoop(ctx, read, 16, 300*time.Millisecond); err != nil {
				b.Fatalf("%s warm-up: %v", k.name, err)
			}
		}
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/closed-%d", k.name, clients), func(b *testing.B) {
				benchClosed(ctx, b, k.http, k.rpc, clients)
			})
		}
		b.Run(fmt.Sprintf("%s/open-%d", k.name, openRate), func(b *testing.B) {
			benchOpen(ctx, b, k.http, k.rpc)
		})
	}
}

// benchClosed runs a closed loop of clients over HTTP, then over the
// transport, b.N times, and reports the mean rates and their ratio.
func benchClosed(ctx context.Context, b *testing.B, httpRead, rpcRead readFn, clients int) {
	var hr, rr float64
	for range b.N {
		h, err := closedLoop(ctx, httpRead, clients, closedFor)
		if err != nil {
			b.Fatalf("http: %v", err)
		}
		r, err := closedLoop(ctx, rpcRead, clients, closedFor)
		if err != nil {
			b.Fatalf("transport: %v", err)
		}
		hr, rr = hr+h, rr+r
	}
	hr, rr = hr/float64(b.N), rr/float64(b.N)
	b.ReportMetric(hr, "req/s")
	b.ReportMetric(rr, "transport-req/s")
	b.ReportMetric(hr/rr, "http/transport")
	b.ReportMetric(0, "ns/op") // one op is two timed runs: meaningless
}

// benchOpen sends openRate requests/s for openFor over HTTP, then over the
// transport, b.N times, and reports the latency percentiles of each and
// the ratio of the p99s.
func benchOpen(ctx context.Context, b *testing.B, httpRead, rpcRead readFn) {
	n := int(openFor / openInterval)
	var hl, rl []time.Duration
	for range b.N {
		h, err := openLoop(ctx, httpRead, n, openInterval)
		if err != nil {
			b.Fatalf("http: %v", err)
		}
		r, err := openLoop(ctx, rpcRead, n, openInterval)
		if err != nil {
			b.Fatalf("transport: %v", err)
		}
		hl, rl = append(hl, h...), append(rl, r...)
	}
	p99, rp99 := latency.PercentileMs(hl, 0.99), latency.PercentileMs(rl, 0.99)
	b.ReportMetric(latency.PercentileMs(hl, 0.5), "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(latency.PercentileMs(hl, 1), "max-ms")
	b.ReportMetric(latency.PercentileMs(rl, 0.5), "transport-p50-ms")
	b.ReportMetric(rp99, "transport-p99-ms")
	if rp99 > 0 {
		b.ReportMetric(p99/rp99, "p99/transport-p99")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkLogFollowers follows one running job's log with 500 HTTP
// event-stream clients, then another build's with 500 logclient.Follow
// followers, and reports the line delivery latencies; a follower that
// misses, repeats or reorders a line fails it (see the package doc).
func BenchmarkLogFollowers(b *testing.B) {
	ctx := runContext(b)
	s := startStack(b, true)
	tk := newTalker(ctx, b, s, logLines)
	// Warm up: the scheduler's first clone of the repository, the runner.
	if _, err := tk.followRun(ctx, warmupFollower, false); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	var hl, dl []time.Duration
	b.ResetTimer()
	for range b.N {
		h, err := tk.followRun(ctx, logFollowers, true)
		if err != nil {
			b.Fatalf("http: %v", err)
		}
		d, err := tk.followRun(ctx, logFollowers, false)
		if err != nil {
			b.Fatalf("direct: %v", err)
		}
		hl, dl = append(hl, h...), append(dl, d...)
	}
	b.StopTimer()
	p50, p99, dp99 := latency.PercentileMs(hl, 0.5), latency.PercentileMs(hl, 0.99), latency.PercentileMs(dl, 0.99)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(latency.PercentileMs(hl, 1), "max-ms")
	b.ReportMetric(latency.PercentileMs(dl, 0.5), "direct-p50-ms")
	b.ReportMetric(dp99, "direct-p99-ms")
	if dp99 > 0 {
		b.ReportMetric(p99/dp99, "p99/direct-p99")
	}
	b.ReportMetric(0, "ns/op")
}
