package logging

import (
	"sync"

	"github.com/zeroci/zeroci/contracts"
)

// Bounds of a job's tail cache.
const (
	maxTailLines = 1024
	maxTailBytes = 256 << 10
)

// tailCache keeps the last lines read of a live log. When a chunk lands,
// every follower of the job wakes and asks for the same new lines; the
// first one reads them from the file, the others get them from here, so a
// log with hundreds of followers is read and decoded once per chunk, not
// once per follower. Stored lines never change, so a cached line is always
// right; the cache only ever holds consecutive lines. Safe for concurrent
// use; a slice it returns is never written again.
type tailCache struct {
	mu    sync.Mutex
	lines []contracts.LogLine // lines[i].N == from+i
	bytes int
}

// get returns the limit lines from line from on, or fewer when budget
// bytes of JSON are reached first (at least one line): the answer a read
// of the file would give. It returns false unless the cache holds all of
// them.
func (c *tailCache) get(from, limit int64, budget int) ([]contracts.LogLine, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) == 0 || from < c.lines[0].N || from > c.lines[len(c.lines)-1].N {
		return nil, false
	}
	rest := c.lines[from-c.lines[0].N:]
	n, used := 0, 0
	for int64(n) < limit {
		if n == len(rest) {
			return nil, false // the cache ends before the read does
		}
		used += lineJSON + contracts.JSONStringLen(rest[n].Text)
		if used > budget && n > 0 {
			break
		}
		n++
	}
	return rest[:n:n], true
}

// add remembers lines just read (consecutive, ascending), keeping the
// newest maxTailLines lines and maxTailBytes bytes of text.
func (c *tailCache) add(lines []contracts.LogLine) {
	if len(lines) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.lines); n == 0 || lines[0].N > c.lines[n-1].N+1 || lines[0].N < c.lines[0].N {
		c.lines, c.bytes = nil, 0 // not adjacent: start again from these
	} else {
		lines = lines[min(int64(len(lines)), c.lines[n-1].N+1-lines[0].N):] // skip what is held
	}
	for _, l := range lines {
		c.lines = append(c.lines, l)
		c.bytes += len(l.Text)
	}
	drop := 0
	for len(c.lines)-drop > maxTailLines || c.bytes > maxTailBytes && len(c.lines)-drop > 1 {
		c.bytes -= len(c.lines[drop].Text)
		drop++
	}
	if drop > 0 {
		// Copy rather than reslice, so the dropped lines' memory goes and
		// the slices handed out keep their elements.
		c.lines = append([]contracts.LogLine(nil), c.lines[drop:]...)
	}
}

// reset empties the cache (the log was closed: its readers are few).
func (c *tailCache) reset() {
	c.mu.Lock()
	c.lines, c.bytes = nil, 0
	c.mu.Unlock()
}
