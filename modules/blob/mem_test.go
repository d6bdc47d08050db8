package blob_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blobclient"
)

// heapPeak samples runtime.MemStats.HeapInuse until stopped and reports
// the peak above the baseline taken (after a GC) when it started.
type heapPeak struct {
	base uint64
	peak uint64
	stop chan struct{}
	done sync.WaitGroup
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapPeak{base: ms.HeapInuse, peak: ms.HeapInuse, stop: make(chan struct{})}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				h.peak = max(h.peak, ms.HeapInuse)
			}
		}
	}()
	return h
}

// end stops sampling and returns the peak above the baseline, in bytes.
func (h *heapPeak) end() uint64 {
	close(h.stop)
	h.done.Wait()
	return h.peak - min(h.base, h.peak)
}

const mib = 1 << 20

// Putting and getting a large blob over tcp holds a bounded amount of
// memory, whatever the blob's size.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB each way")
	}
	e := newEnv(t, "tcp", blob.Options{})
	ctx := ctxT(t)
	// A transfer that held the blob would exceed the bound by far.
	size, bound := int64(256*mib), uint64(64*mib)
	if raceEnabled { // 5 MB/s: a smaller blob, still above its bound
		size, bound = 64*mib, 48*mib
	}

	want := sha256.New()
	if _, err := io.Copy(want, stream(42, size)); err != nil {
		t.Fatal(err)
	}
	wantSum := hex.EncodeToString(want.Sum(nil))

	hp := startHeapPeak()
	start := time.Now()
	info, err := blobclient.Put(ctx, e.client, "big/blob", "application/octet-stream", stream(42, size))
	putTook, putPeak := time.Since(start), hp.end()
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size || info.SHA256 != wantSum {
		t.Fatalf("put: %+v, want %d bytes, sha256 %s", info, size, wantSum)
	}

	got := sha256.New()
	hp = startHeapPeak()
	start = time.Now()
	_, err = blobclient.Get(ctx, e.client, "big/blob", got)
	getTook, getPeak := time.Since(start), hp.end()
	if err != nil {
		t.Fatal(err)
	}
	if sum := hex.EncodeToString(got.Sum(nil)); sum != wantSum {
		t.Fatalf("get: sha256 %s, want %s", sum, wantSum)
	}
	t.Logf("%d MiB over tcp: put %v (%.0f MB/s), peak heap +%.1f MiB; get %v (%.0f MB/s), peak heap +%.1f MiB",
		size/mib, putTook.Round(time.Millisecond), float64(size)/putTook.Seconds()/1e6, float64(putPeak)/mib,
		getTook.Round(time.Millisecond), float64(size)/getTook.Seconds()/1e6, float64(getPeak)/mib)
	if putPeak > bound || getPeak > bound {
		t.Fatalf("peak heap above baseline: put %.1f MiB, get %.1f MiB; bound %d MiB",
			float64(putPeak)/mib, float64(getPeak)/mib, bound/mib)
	}
}

// BenchmarkTransfer puts and gets a blob in-process and over tcp and
// reports throughput and the peak heap above the baseline. The 1 GiB
// cases run only when asked for: -bench 'Transfer/.*/1GiB'.
func BenchmarkTransfer(b *testing.B) {
	for _, kind := range []string{"inproc", "tcp"} {
		for _, size := range []int64{256 * mib, 1024 * mib} {
			name := kind + "/256MiB"
			if size > 256*mib {
				name = kind + "/1GiB"
			}
			b.Run(name+"/put", func(b *testing.B) { benchTransfer(b, kind, size, false) })
			b.Run(name+"/get", func(b *testing.B) { benchTransfer(b, kind, size, true) })
		}
	}
}

func benchTransfer(b *testing.B, kind string, size int64, get bool) {
	if size > 256*mib && os.Getenv("ZEROCI_BENCH_1GIB") == "" {
		b.Skip("set ZEROCI_BENCH_1GIB=1 to move 1 GiB")
	}
	e := newEnv(b, kind, blob.Options{})
	ctx := ctxT(b)
	if get {
		if _, err := blobclient.Put(ctx, e.client, "bench", "", stream(1, size)); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	var peak uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		hp := startHeapPeak()
		b.StartTimer()
		var err error
		if get {
			_, err = blobclient.Get(ctx, e.client, "bench", io.Discard)
		} else {
			_, err = blobclient.Put(ctx, e.client, "bench", "", stream(uint64(i), size))
		}
		b.StopTimer()
		peak = max(peak, hp.end())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/mib, "peak-heap-MiB")
}
