package logging_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/logging"
)

// benchLine is an 80-byte line.
var benchLine = strings.Repeat("0123456789abcdefghij", 4)

// BenchmarkIngest: lines of 80 bytes written by Writers, one per job, from
// the first Line to the last line durable (Finish). b.N is the number of
// lines over all jobs.
func BenchmarkIngest(b *testing.B) {
	for _, kind := range transports {
		for _, jobs := range []int{1, 20} {
			b.Run(fmt.Sprintf("%s/jobs=%d", kind, jobs), func(b *testing.B) { benchIngest(b, kind, jobs, nil) })
		}
	}
	// Masking ten secrets (none of which occurs).
	var masks []contracts.Secret
	for i := range 10 {
		masks = append(masks, contracts.Secret(fmt.Sprintf("secret-value-%02d-f00d", i)))
	}
	b.Run("inproc/jobs=1/masks=10", func(b *testing.B) { benchIngest(b, "inproc", 1, masks) })
}

func benchIngest(b *testing.B, kind string, jobs int, masks []contracts.Secret) {
	e := newEnv(b, kind, logging.Options{MaxJobBytes: 1 << 40})
	ctx := ctxT(b)
	writers := make([]*logclient.Writer, jobs)
	for i := range writers {
		w, err := logclient.NewWriter(ctx, e.client, jobRef(fmt.Sprintf("bench-%d", i)), 1, masks, logclient.WriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		writers[i] = w
	}
	b.SetBytes(int64(len(benchLine)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, w := range writers {
		n := b.N / jobs
		if i < b.N%jobs {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := w.Line(contracts.StreamStdout, benchLine); err != nil {
					b.Error(err)
					return
				}
			}
			if err := w.Finish(ctx); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
}

// BenchmarkFollowLatency: the time from a Writer's Line to a follower's
// receipt of that line, with lines written at a steady 20,000 per second.
// b.N is the number of lines.
func BenchmarkFollowLatency(b *testing.B) {
	for _, kind := range transports {
		b.Run(kind, func(b *testing.B) {
			e := newEnv(b, kind, logging.Options{MaxJobBytes: 1 << 40})
			ctx := ctxT(b)
			job := jobRef("latency")
			w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			var mu sync.Mutex
			done := make(chan error, 1)
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				done <- logclient.Follow(fctx, e.client, job, 1, func(l contracts.LogLine) error {
					d := time.Since(l.Time)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
					return nil
				})
			}()
			const every = 50 * time.Microsecond
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
					time.Sleep(d)
				}
				if err := w.Line(contracts.StreamStdout, benchLine); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := w.Close(ctx); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			mu.Lock()
			defer mu.Unlock()
			if len(lat) != b.N {
				b.Fatalf("%d lines followed, want %d", len(lat), b.N)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
