package hubbench

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// publishers are the concurrent publishers of BenchmarkPublish.
var publishers = []int{1, 16, 64}

// latencyRate is BenchmarkLatency's publish rate, events per second.
const latencyRate = 2000

// BenchmarkPublish: P publishers each publish events and wait for each
// acknowledgement (stored: fsynced or committed, except on the shared
// JetStream server, which acknowledges before its fsync). The metric
// events/s counts acknowledged events; ns/op is its inverse.
func BenchmarkPublish(b *testing.B) {
	for _, s := range systems() {
		b.Run(s.name, func(b *testing.B) {
			p := s.open(b)
			for _, n := range publishers {
				b.Run(fmt.Sprintf("P=%d", n), func(b *testing.B) {
					elapsed, err := publishRun(runContext(b), b, p, b.N, n)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
				})
			}
		})
	}
}

// BenchmarkLatency: one publisher at latencyRate events/s (b.N events,
// each waiting for its acknowledgement) and one follower; p50-µs and
// p99-µs are publish→deliver latencies of all b.N events, sent/s the rate
// the publisher achieved. ns/op is the publish interval and means little.
func BenchmarkLatency(b *testing.B) {
	for _, s := range systems() {
		b.Run(s.name, func(b *testing.B) {
			p := s.open(b)
			b.Run(fmt.Sprintf("rate=%d", latencyRate), func(b *testing.B) {
				l, err := latencyRun(runContext(b), b, p, b.N, latencyRate)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(micros(l.percentile(50)), "p50-µs")
				b.ReportMetric(micros(l.percentile(99)), "p99-µs")
				b.ReportMetric(micros(l.percentile(100)), "max-µs")
				b.ReportMetric(l.rate, "sent/s")
			})
		})
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// The benchmarks run only with -bench. This test runs every system they
// compare on a few events: concurrent publishes must all be acknowledged,
// and a paced stream must reach the follower whole, each event once.

func TestFixtures(t *testing.T) {
	for _, s := range systems() {
		t.Run(s.name, func(t *testing.T) {
			p := s.open(t)
			ctx := runContext(t)
			if _, err := publishRun(ctx, noTimer{}, p, 200, 16); err != nil {
				t.Fatalf("publish: %v", err)
			}
			const n = 100
			l, err := latencyRun(ctx, noTimer{}, p, n, latencyRate)
			if err != nil {
				t.Fatalf("latency: %v", err)
			}
			if len(l.samples) != n || l.samples[0] <= 0 || l.rate <= 0 {
				t.Fatalf("%d samples from %v, rate %.0f/s; want %d samples > 0", len(l.samples), l.percentile(0.1), l.rate, n)
			}
		})
	}
}

// The benchmark event is the realistic size the comparison is about.
func TestEventSize(t *testing.T) {
	ev, err := newEvent(12345)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 250 || len(data) > 350 {
		t.Fatalf("event is %d bytes of JSON, want about 300: %s", len(data), data)
	}
}
