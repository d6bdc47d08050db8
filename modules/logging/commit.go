package logging

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

const (
	// commitBytes: one group commit takes further waiting writes only
	// while it holds fewer bytes than this, so the first one's latency
	// stays bounded.
	commitBytes = 16 << 20
	// syncWorkers bounds the files fsynced at once by one commit.
	syncWorkers = 8
)

// write is one job's records waiting to be made durable: an append's lines
// and commit record, an open or a close record. The handler that submits
// it encodes it and decides what it changes; the committer writes it,
// fsyncs, and then makes the change visible to readers (vis).
type write struct {
	j   *job
	f   *os.File
	buf []byte
	vis visible // the job's durable state once this write is

	err  error
	done chan struct{}
}

// committer is the one goroutine that writes and fsyncs every job's file:
// it takes all writes waiting, from every job, writes them, fsyncs each
// file it touched once (in parallel) and then answers them all (group
// commit), so a burst of appends costs one round of fsyncs, not one each.
type committer struct {
	mu    sync.Mutex
	queue []*write
	wake  chan struct{} // holds at most one signal
	quit  chan struct{}
	done  chan struct{}

	backlog atomic.Int64 // bytes submitted and not yet durable
	// syncHook, if set, runs before every fsync round (tests slow the
	// store down with it).
	syncHook func()
}

func newCommitter(syncHook func()) *committer {
	c := &committer{wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), syncHook: syncHook}
	go c.run()
	return c
}

// submit queues w; it never blocks. w.done is closed once w is durable
// and visible, or failed.
func (c *committer) submit(w *write) {
	w.done = make(chan struct{})
	c.mu.Lock()
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	c.backlog.Add(int64(len(w.buf)))
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// stop commits what is queued and stops the goroutine. Nothing may be
// submitted once stop is called.
func (c *committer) stop() {
	close(c.quit)
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	var batch []*write
	for {
		select {
		case <-c.wake:
		case <-c.quit:
			for batch = c.take(batch[:0]); len(batch) > 0; batch = c.take(batch[:0]) {
				c.commit(batch)
			}
			return
		}
		for batch = c.take(batch[:0]); len(batch) > 0; batch = c.take(batch[:0]) {
			c.commit(batch)
			clear(batch)
		}
	}
}

// take moves up to commitBytes of queued writes (at least one) to batch.
func (c *committer) take(batch []*write) []*write {
	c.mu.Lock()
	defer c.mu.Unlock()
	size, n := 0, 0
	for n < len(c.queue) && (n == 0 || size < commitBytes) {
		size += len(c.queue[n].buf)
		n++
	}
	batch = append(batch, c.queue[:n]...)
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go after a burst
	}
	return batch
}

// commit writes a batch, fsyncs the files it touched and answers it. A
// job whose write or fsync failed takes no more writes: what reached its
// file is unknown until it is opened again (which cuts a torn tail).
func (c *committer) commit(batch []*write) {
	var files []*job
	size := 0
	for _, w := range batch {
		size += len(w.buf)
		j := w.j
		if j.werr != nil {
			continue
		}
		if _, err := w.f.Write(w.buf); err != nil {
			j.werr = fmt.Errorf("logging: write %s: %w", j.path, err)
			continue
		}
		if !j.touched {
			j.touched = true
			files = append(files, j)
		}
	}
	if c.syncHook != nil {
		c.syncHook()
	}
	c.syncAll(files, batch)
	for _, w := range batch {
		w.j.touched = false
		if w.err = w.j.werr; w.err != nil {
			w.j.fail(w.err)
		} else {
			w.j.publish(w.vis)
		}
		close(w.done)
	}
	c.backlog.Add(-int64(size))
}

// syncAll fsyncs the files of jobs, several at once.
func (c *committer) syncAll(jobs []*job, batch []*write) {
	files := make(map[*job]*os.File, len(jobs))
	for _, w := range batch {
		if w.j.touched {
			files[w.j] = w.f
		}
	}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(len(jobs), syncWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				if err := files[j].Sync(); err != nil {
					j.werr = fmt.Errorf("logging: fsync %s: %w", j.path, err)
				}
			}
		}()
	}
	wg.Wait()
}
