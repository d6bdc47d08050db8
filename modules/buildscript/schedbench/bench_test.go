package schedbench

import (
	"fmt"
	"testing"
	"time"

	"github.com/zeroci/zeroci/internal/latency"
)

// Sizes of the benchmarks.
const (
	latencyWarmup  = 3   // builds before the samples: the mirror's first clone, the runner's hello
	latencySamples = 50  // builds per benchmark iteration
	queuedBuilds   = 200 // builds of the three-job pipeline per throughput run
	runnerCapacity = 2   // jobs per runner, as in the throughput runs
)

// BenchmarkTriggerToRunning measures trigger→job.started for a one-job
// pipeline, in one process and with the runner in another process over
// tcp, beside the trigger request alone (see the package doc).
func BenchmarkTriggerToRunning(b *testing.B) {
	cases := []struct {
		name  string
		start func(testing.TB) *engine
	}{
		{"inproc", func(tb testing.TB) *engine { return startInproc(tb, true) }},
		{"split-tcp", startSplit},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := runContext(b)
			e := c.start(b)
			w := prepare(ctx, b, e, oneJobPipeline, repoName)
			if _, err := measureLatency(ctx, e, w, latencyWarmup); err != nil {
				b.Fatalf("warm-up: %v", err)
			}
			var all latencies
			b.ResetTimer()
			for range b.N {
				l, err := measureLatency(ctx, e, w, latencySamples)
				if err != nil {
					b.Fatal(err)
				}
				all.trigger = append(all.trigger, l.trigger...)
				all.queued = append(all.queued, l.queued...)
				all.running = append(all.running, l.running...)
			}
			b.StopTimer()
			p50, trig50 := latency.PercentileMs(all.running, 0.5), latency.PercentileMs(all.trigger, 0.5)
			b.ReportMetric(p50, "p50-ms")
			b.ReportMetric(latency.PercentileMs(all.running, 0.99), "p99-ms")
			b.ReportMetric(trig50, "trigger-p50-ms")
			b.ReportMetric(latency.PercentileMs(all.trigger, 0.99), "trigger-p99-ms")
			// The scheduler's part: mirror sync, pipeline, plan, queue.
			b.ReportMetric(latency.PercentileMs(all.queued, 0.5), "queued-p50-ms")
			if trig50 > 0 {
				b.ReportMetric(p50/trig50, "p50/trigger-p50")
			}
			b.ReportMetric(0, "ns/op") // one op is latencySamples builds: meaningless
		})
	}
}

// BenchmarkBuildsPerMinute queues 200 three-job builds of one repository,
// then runs them with 1, 2 and 4 runners of capacity 2, beside the same
// 600 scripts run by the shell executor at the same concurrency (see the
// package doc). The last case spreads the builds over 8 repositories: the
// data store serialises the commands of one repository, and it shows how
// much of the one-repository figure that costs.
func BenchmarkBuildsPerMinute(b *testing.B) {
	cases := []struct{ runners, repos int }{{1, 1}, {2, 1}, {4, 1}, {4, 8}}
	for _, c := range cases {
		name := fmt.Sprintf("runners=%d", c.runners)
		if c.repos > 1 {
			name += fmt.Sprintf("/repos=%d", c.repos)
		}
		b.Run(name, func(b *testing.B) {
			ctx := runContext(b)
			conc := c.runners * runnerCapacity
			repos := []string{repoName}
			for i := 2; i <= c.repos; i++ {
				repos = append(repos, fmt.Sprintf("%s-%d", repoName, i))
			}
			var zeroci, shell, zCPU, sCPU time.Duration
			b.StopTimer()
			for range b.N {
				e := startInproc(b, false)
				w := prepare(ctx, b, e, threeJobPipeline, repos...)
				ks, err := queueBuilds(ctx, e, w, repos, queuedBuilds)
				if err != nil {
					b.Fatal(err)
				}
				cpu0 := cpuTime()
				b.StartTimer()
				d, err := runBuilds(ctx, b, e, w, ks, c.runners)
				b.StopTimer()
				zCPU += cpuTime() - cpu0
				if err != nil {
					b.Fatal(err)
				}
				w.stop()
				e.stop()
				cpu0 = cpuTime()
				sd, err := shellBaseline(ctx, b, queuedBuilds*len(threeJobs), conc)
				if err != nil {
					b.Fatal(err)
				}
				sCPU += cpuTime() - cpu0
				zeroci += d
				shell += sd
			}
			jobsDone := float64(b.N * queuedBuilds * len(threeJobs))
			zJobs, sJobs := jobsDone/zeroci.Seconds(), jobsDone/shell.Seconds()
			b.ReportMetric(float64(b.N*queuedBuilds)/zeroci.Minutes(), "builds/min")
			b.ReportMetric(zJobs, "jobs/s")
			b.ReportMetric(sJobs, "shell-jobs/s")
			b.ReportMetric(zJobs/sJobs, "zeroci/shell")
			// How long one job holds a runner slot beyond the bare script.
			b.ReportMetric((float64(conc)/zJobs-float64(conc)/sJobs)*1000, "overhead-ms/job")
			// CPU time per job (this process, its modules and the
			// scripts), which the machine's other load does not inflate
			// as much as wall time.
			b.ReportMetric(float64(zCPU)/jobsDone/float64(time.Millisecond), "cpu-ms/job")
			b.ReportMetric(float64(sCPU)/jobsDone/float64(time.Millisecond), "shell-cpu-ms/job")
		})
	}
}
