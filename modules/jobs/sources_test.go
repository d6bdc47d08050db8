//go:build unix

package jobs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/fsstore"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

// countingTransport counts blob.get requests.
type countingTransport struct {
	transport.Transport
	gets atomic.Int64
}

func (c *countingTransport) Request(ctx context.Context, service string, data []byte, opts ...transport.RequestOption) ([]byte, error) {
	if env, err := contracts.Unmarshal(data); err == nil && env.Type == contracts.TypeGetBlob {
		c.gets.Add(1)
	}
	return c.Transport.Request(ctx, service, data, opts...)
}

// newTestSourceCache starts a blob store and returns a cache of max bytes
// reading from it, the transport it counts gets on, and a func that stores
// a blob.
func newTestSourceCache(t testing.TB, max int64) (*sourceCache, *countingTransport, func(key, body string)) {
	t.Helper()
	net := inproc.NewNetwork()
	srv, client := net.Node(), net.Node()
	t.Cleanup(func() { client.Close(); srv.Close() })
	moduletest.Start(t, blob.New(blob.Options{Open: func(ctx context.Context, dir string) (blobstore.Backend, error) {
		return fsstore.New(filepath.Join(dir, "blobstore"))
	}}), moduletest.Host{TR: srv, Log: moduletest.Logger(t), Dir: t.TempDir()})
	ct := &countingTransport{Transport: client}
	dir, tmp := t.TempDir(), t.TempDir()
	put := func(key, body string) {
		t.Helper()
		if _, err := blobclient.Put(moduletest.Context(t, 30*time.Second), client, key, "application/x-tar", strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	return newSourceCache(dir, tmp, max, ct), ct, put
}

func readAll(t testing.TB, c *sourceCache, key string) string {
	t.Helper()
	f, err := c.open(moduletest.Context(t, 30*time.Second), key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSourceCacheDownloadsOnce: jobs that want one archive at once share
// one download, and later ones read the local file even when the blob is
// gone.
func TestSourceCacheDownloadsOnce(t *testing.T) {
	c, ct, put := newTestSourceCache(t, 1<<20)
	key := contracts.SourceKey("web", strings.Repeat("a", 40))
	put(key, "the archive")
	var wg sync.WaitGroup
	got := make([]string, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Go(func() {
			f, err := c.open(context.Background(), key)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			b, err := io.ReadAll(f)
			got[i], errs[i] = string(b), err
		})
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != "the archive" {
			t.Fatalf("open %d: %q, %v", i, got[i], errs[i])
		}
	}
	if n := ct.gets.Load(); n != 1 {
		t.Fatalf("%d blob.get requests for 8 concurrent opens, want 1", n)
	}
	if err := blobclient.Delete(moduletest.Context(t, 30*time.Second), ct.Transport, key); err != nil {
		t.Fatal(err)
	}
	if s := readAll(t, c, key); s != "the archive" || ct.gets.Load() != 1 {
		t.Fatalf("after the blob's removal: %q, %d gets", s, ct.gets.Load())
	}
}

// TestSourceCacheEvictsLeastRecentlyUsed keeps the cache within its bytes,
// dropping the archive used longest ago, never the one just added.
func TestSourceCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c, ct, put := newTestSourceCache(t, 25) // room for two 10-byte archives
	keys := make([]string, 3)
	for i := range keys {
		keys[i] = contracts.SourceKey("web", strings.Repeat(string(rune('a'+i)), 40))
		put(keys[i], strings.Repeat(string(rune('0'+i)), 10))
	}
	readAll(t, c, keys[0])
	readAll(t, c, keys[1])
	// Make keys[0] the most recently used, so keys[1] goes next.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(c.path(keys[1]), old, old); err != nil {
		t.Fatal(err)
	}
	readAll(t, c, keys[0])
	readAll(t, c, keys[2])
	if _, err := os.Stat(c.path(keys[1])); !os.IsNotExist(err) {
		t.Fatalf("the least recently used archive is still there: %v", err)
	}
	for _, k := range []string{keys[0], keys[2]} {
		if _, err := os.Stat(c.path(k)); err != nil {
			t.Fatalf("%s evicted: %v", k, err)
		}
	}
	before := ct.gets.Load()
	if s := readAll(t, c, keys[1]); s != strings.Repeat("1", 10) || ct.gets.Load() != before+1 {
		t.Fatalf("an evicted archive is downloaded again: %q", s)
	}
}

// TestSourceCacheFailedDownloadLeavesNothing: a missing blob is an error,
// and neither the cache nor its temporary directory keeps a file for it.
func TestSourceCacheFailedDownloadLeavesNothing(t *testing.T) {
	c, _, _ := newTestSourceCache(t, 1<<20)
	key := contracts.SourceKey("web", strings.Repeat("f", 40))
	if _, err := c.open(context.Background(), key); contracts.CodeOf(err) != contracts.CodeNotFound {
		t.Fatalf("open of a missing archive: %v, want not_found", err)
	}
	for _, d := range []string{c.dir, c.tmp} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Fatalf("%s holds %d files after a failed download", d, len(entries))
		}
	}
}

// BenchmarkSourceFetch compares what a job does to get its source archive
// (1 MiB here) before extracting it: download it from the blob store to a
// temporary file and read it (what every job did before the cache), or
// open the runner's cached copy and read it.
func BenchmarkSourceFetch(b *testing.B) {
	body := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	b.Run("download", func(b *testing.B) {
		c, ct, put := newTestSourceCache(b, 1<<30)
		key := contracts.SourceKey("web", strings.Repeat("d", 40))
		put(key, body)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			f, err := os.CreateTemp(c.tmp, "fetch-*")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := blobclient.Get(context.Background(), ct, key, f); err != nil {
				b.Fatal(err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
			os.Remove(f.Name())
		}
	})
	b.Run("cached", func(b *testing.B) {
		c, _, put := newTestSourceCache(b, 1<<30)
		key := contracts.SourceKey("web", strings.Repeat("c", 40))
		put(key, body)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			f, err := c.open(context.Background(), key)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
