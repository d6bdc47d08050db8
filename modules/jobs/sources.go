//go:build unix

package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/transport"
)

// sourceCacheBytes bounds the source archives a runner keeps.
const sourceCacheBytes = 1 << 30

// sourceCache keeps the source archives (sources/<repo>/<commit>.tar,
// immutable) of recent commits on the runner's disk, so the jobs of a build
// after the first read the archive from a local file instead of the blob
// store, and create no temporary file for it. A file is in the cache only
// once complete (written to tmp, synced, renamed), so a crash leaves either
// the whole archive or none. The least recently used archives go when the
// cache holds more than max bytes. Safe for concurrent use: one download
// per archive, which the other jobs wanting it wait for.
type sourceCache struct {
	dir, tmp string
	max      int64
	tr       transport.Transport

	mu      sync.Mutex
	loading map[string]*sourceLoad
}

type sourceLoad struct {
	done chan struct{}
	err  error
}

func newSourceCache(dir, tmp string, max int64, tr transport.Transport) *sourceCache {
	return &sourceCache{dir: dir, tmp: tmp, max: max, tr: tr, loading: map[string]*sourceLoad{}}
}

// path is where key's archive is kept.
func (c *sourceCache) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(c.dir, hex.EncodeToString(sum[:16])+".tar")
}

// open returns key's archive, downloading it first when the cache lacks it.
func (c *sourceCache) open(ctx context.Context, key string) (*os.File, error) {
	name := c.path(key)
	for {
		if f, err := os.Open(name); err == nil {
			// Mark it recently used; a minute's precision is plenty, and
			// saves the jobs of a build a metadata write each.
			if info, err := f.Stat(); err == nil && time.Since(info.ModTime()) > time.Minute {
				now := time.Now()
				_ = os.Chtimes(name, now, now)
			}
			return f, nil
		}
		c.mu.Lock()
		if l := c.loading[name]; l != nil {
			c.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if l.err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue // in the cache now, or its download failed: try ourselves
		}
		l := &sourceLoad{done: make(chan struct{})}
		c.loading[name] = l
		c.mu.Unlock()
		l.err = c.download(ctx, key, name)
		c.mu.Lock()
		delete(c.loading, name)
		c.mu.Unlock()
		close(l.done)
		if l.err != nil {
			return nil, l.err
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		c.evict(name)
		return f, nil
	}
}

// download stores key's blob at name, whole or not at all.
func (c *sourceCache) download(ctx context.Context, key, name string) error {
	f, err := os.CreateTemp(c.tmp, "source-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	defer f.Close()
	if _, err := blobclient.Get(ctx, c.tr, key, f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// evict removes the least recently used archives while the cache holds
// more than c.max bytes, keeping keep (the archive just added).
func (c *sourceCache) evict(keep string) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type file struct {
		name string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		files = append(files, file{filepath.Join(c.dir, e.Name()), info.Size(), info.ModTime()})
		total += info.Size()
	}
	slices.SortFunc(files, func(a, b file) int { return a.used.Compare(b.used) })
	for _, f := range files {
		if total <= c.max {
			return
		}
		if f.name == keep {
			continue
		}
		if os.Remove(f.name) == nil {
			total -= f.size
		}
	}
}
