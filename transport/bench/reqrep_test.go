package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

// Request/reply: an echo service answers each request with its own bytes.
// Latency is measured over sequential round trips (one caller at a time);
// throughput with concurrentCallers callers at once.

const (
	// reqSize is the request (and reply) size of every request benchmark.
	reqSize = 100
	// concurrentCallers is how many callers the throughput benchmark runs.
	concurrentCallers = 32
	// echoService is the service the benchmarks call.
	echoService = "bench.echo"
)

// roundTrip sends req and returns the reply. Each roundTrip that the caller
// source returned by rrCase.setup hands out is used by one goroutine at a
// time, so it may keep state between calls.
type roundTrip func(ctx context.Context, req []byte) ([]byte, error)

// rrCase is one request/reply implementation. setup starts it and returns a
// source of callers; each concurrent caller gets its own.
type rrCase struct {
	name  string
	setup func(tb testing.TB) (caller func() roundTrip)
}

// echo is the handler of every transport benchmark.
func echo(_ context.Context, req []byte) ([]byte, error) { return req, nil }

// transportCaller serves echoService on server and returns a caller that
// requests it from client.
func transportCaller(tb testing.TB, server, client transport.Transport) func() roundTrip {
	tb.Helper()
	svc, err := server.Serve(echoService, echo)
	if err != nil {
		tb.Fatalf("serve: %v", err)
	}
	tb.Cleanup(func() { svc.Close() })
	rt := func(ctx context.Context, req []byte) ([]byte, error) {
		return client.Request(ctx, echoService, req)
	}
	return func() roundTrip { return rt }
}

// chanCaller is the floor: a server goroutine reading requests from one
// channel and answering on the caller's own reply channel.
func chanCaller(tb testing.TB) func() roundTrip {
	type request struct {
		data  []byte
		reply chan []byte
	}
	reqs := make(chan request)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range reqs {
			r.reply <- r.data
		}
	}()
	tb.Cleanup(func() { close(reqs); wg.Wait() })
	return func() roundTrip {
		reply := make(chan []byte)
		return func(_ context.Context, req []byte) ([]byte, error) {
			reqs <- request{data: req, reply: reply}
			return <-reply, nil
		}
	}
}

func inprocCase() rrCase {
	return rrCase{name: "inproc", setup: func(tb testing.TB) func() roundTrip {
		server, client := newInprocPair(tb)
		return transportCaller(tb, server, client)
	}}
}

// zmqCase calls from a client node a service served on the hub: one hop,
// like a raw DEALER talking to a ROUTER.
func zmqCase(scheme string) rrCase {
	return rrCase{name: "zmq-" + scheme, setup: func(tb testing.TB) func() roundTrip {
		c := newZmqCluster(tb, scheme, 1)
		return transportCaller(tb, c.hub, c.clients[0])
	}}
}

// latencyCases lists the sequential round-trip implementations, baselines
// first.
func latencyCases() []rrCase {
	cases := []rrCase{{name: "chan", setup: chanCaller}, inprocCase()}
	for _, s := range schemes {
		cases = append(cases, zmqCase(s))
	}
	for _, s := range schemes {
		cases = append(cases, rrCase{name: "raw-zmq4-" + s, setup: func(tb testing.TB) func() roundTrip {
			rt := rawEcho(tb, s)
			return func() roundTrip { return rt }
		}})
	}
	return cases
}

// concurrentCases lists the implementations measured with concurrent callers.
func concurrentCases() []rrCase {
	cases := []rrCase{{name: "chan", setup: chanCaller}, inprocCase()}
	for _, s := range schemes {
		cases = append(cases, zmqCase(s))
	}
	return cases
}

// BenchmarkRequestLatency measures sequential round trips of reqSize bytes:
// ns/op is the mean, p50-ns and p99-ns the percentiles of the last run.
func BenchmarkRequestLatency(b *testing.B) {
	for _, c := range latencyCases() {
		b.Run(c.name, func(b *testing.B) {
			rt := c.setup(b)()
			p50, p99 := measureLatency(b, b, rt, b.N)
			b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkRequestConcurrent measures request throughput (req/s) with
// concurrentCallers callers sharing one transport node.
func BenchmarkRequestConcurrent(b *testing.B) {
	for _, c := range concurrentCases() {
		b.Run(fmt.Sprintf("%s/callers=%d", c.name, concurrentCallers), func(b *testing.B) {
			elapsed := measureConcurrent(b, b, c.setup(b), b.N, concurrentCallers)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		})
	}
}

// checkEcho checks that reply echoes a request stamped with seq.
func checkEcho(reply []byte, seq uint64) error {
	if len(reply) != reqSize || binary.LittleEndian.Uint64(reply) != seq {
		return fmt.Errorf("reply to request %d: %d bytes, want %d with its sequence number", seq, len(reply), reqSize)
	}
	return nil
}

// measureLatency makes one warm-up call (connections, first allocations),
// then n timed round trips, and returns their p50 and p99.
func measureLatency(tb testing.TB, tm timer, rt roundTrip, n int) (p50, p99 time.Duration) {
	tb.Helper()
	ctx := runContext(tb)
	req := make([]byte, reqSize)
	if _, err := rt(ctx, req); err != nil {
		tb.Fatalf("warm-up request: %v", err)
	}
	samples := make([]time.Duration, n)
	tm.ResetTimer()
	for i := range samples {
		binary.LittleEndian.PutUint64(req, uint64(i))
		t0 := time.Now()
		reply, err := rt(ctx, req)
		samples[i] = time.Since(t0)
		if err != nil {
			tb.Fatalf("request %d: %v", i, err)
		}
		if err := checkEcho(reply, uint64(i)); err != nil {
			tb.Fatal(err)
		}
	}
	tm.StopTimer()
	return latencyStats(samples)
}

// measureConcurrent runs n round trips spread over callers goroutines, each
// with its own caller and request buffer, and returns the time they took.
func measureConcurrent(tb testing.TB, tm timer, caller func() roundTrip, n, callers int) time.Duration {
	tb.Helper()
	ctx, cancel := context.WithCancel(runContext(tb))
	defer cancel()
	rts := make([]roundTrip, callers)
	for i := range rts {
		rts[i] = caller()
		if _, err := rts[i](ctx, make([]byte, reqSize)); err != nil {
			tb.Fatalf("warm-up request: %v", err)
		}
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	tm.ResetTimer()
	start := time.Now()
	for _, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, reqSize)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				binary.LittleEndian.PutUint64(req, uint64(i))
				reply, err := rt(ctx, req)
				if err == nil {
					err = checkEcho(reply, uint64(i))
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	tm.StopTimer()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
	return elapsed
}
