// Package logging is the job log module: it stores the lines runners send
// (logging.open, logging.append), serves them by line range and to
// followers (logging.read, with WaitMs to wait for new lines), and on
// logging.close seals the log into the blob store and publishes
// log.closed. Package logclient is the client: a Writer for runners and
// Follow for readers.
//
// # Storage
//
// Each job has one append-only file, DATA_DIR/logging/jobs/<repo>/<build>/
// <job>.log, of framed, checksummed records (record.go): its stored lines,
// a commit record after each chunk's lines (the chunk's attempt and
// sequence number, the next line number, truncation, the masking context),
// an open record per logging.open (the secrets to mask, sealed) and a
// close record. One committer goroutine writes every job's records and
// fsyncs each file it touched once per round (group commit), so a busy
// log costs one fsync per round, not one per chunk. A chunk is answered,
// and its lines become visible to readers, only once it is durable. On
// restart a job's file is read back when the job is next used; a torn
// tail (lines without their commit record, a partial frame) was never
// acknowledged and is cut off.
//
// # Ingest
//
// Chunks of an attempt are numbered 1, 2, 3...; the runner keeps up to
// Credit.Window unanswered. Chunks are stored in sequence order: one that
// arrives before its predecessor waits for it (up to gapWait). A chunk
// already stored is answered again (after it is durable) and not stored
// twice. Backpressure is in the answers: a chunk is answered once it is
// durable, so a runner that writes faster than the disk, with its window
// full, waits; when the committer's backlog passes backlogHigh, answers
// shrink the window to one chunk. Nothing is dropped, except past the
// job's size limit (Options.MaxJobBytes): the line that would pass it is
// replaced by one truncation line, later lines are counted and dropped,
// and credits, the summary and log.closed say Truncated. A write that
// fails leaves the job refusing more (internal) until the module
// restarts and cuts what did not reach the disk.
//
// # Close
//
// logging.close waits for the attempt's last chunk, streams the stored
// lines' text (each with a newline) into the blob store at
// logs/<repo>/<build>/<job>.log, writes the close record (with the
// log.closed event, so that a repeated close after a restart publishes
// the same event ID) and publishes the event. The close runs on its own:
// a caller that gives up and asks again waits for the same one.
//
// # Reads
//
// Readers read the file on their own (through the page cache), from an
// index of every indexEvery-th line's offset, and never take a lock the
// ingest path holds for longer than copying a few numbers, so a slow
// reader slows neither ingest nor other readers. A read with WaitMs waits
// for the job's next durable write. Reads of a closed log whose file is
// gone are served from its blob, restored into a local file (times are
// then the blob's, streams stdout: the blob keeps only the text).
//
// # Secrets
//
// The values given to logging.open are masked with "***" in what is
// stored, so readers never see them, also when a value spans lines or
// chunks (mask.go). The values, and the unmasked tail of a line that may
// be the start of a secret, are kept in the job's file sealed with
// AES-256-GCM under the module's key (Options.KeyFile).
package logging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/seal"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Summary says in one line what the module does, for --help.
const Summary = "job log lines: store, tail and follow"

// Defaults of Options.
const (
	// DefaultMaxJobBytes bounds a job's stored log: 100 MiB.
	DefaultMaxJobBytes = 100 << 20
	// DefaultWindow is the credit window: chunks a runner may send ahead.
	DefaultWindow = 16
)

// Tuning.
const (
	// serveConcurrency is how many requests the module handles at once.
	// Followers wait in their requests, so it is large; maxWaiters leaves
	// room for appends.
	serveConcurrency = 4096
	maxWaiters       = 3072
	// gapWait bounds how long a chunk waits for its predecessor.
	gapWait = 10 * time.Second
	// maxAhead is how far past the last chunk stored a chunk may be and
	// wait: the largest window a credit can give.
	maxAhead = 1024
	// backlogHigh: past this many bytes waiting for the disk, credits
	// shrink to one chunk.
	backlogHigh = 64 << 20
	// maxReadBytes bounds the estimated JSON size of one read's lines, well
	// within transport.MaxPayload.
	maxReadBytes = 6 << 20
	// readBuffer is the read buffer of one read.
	readBuffer = 256 << 10
	// lineJSON is a line's JSON size besides its text.
	lineJSON = 96
	// blobMissTTL: after the blob store said it has no log of a job that
	// has no file here, reads of it do not ask again for this long.
	blobMissTTL = 2 * time.Second
	// blobAskTimeout bounds asking the blob store whether it has a log.
	blobAskTimeout = 5 * time.Second
	// publishBackoffMax bounds the wait between attempts to publish
	// log.closed.
	publishBackoffMax = time.Second
	// closeTimeout bounds one attempt to seal a log and publish log.closed.
	closeTimeout = 10 * time.Minute
)

// ErrInvalidOptions matches the errors of Options.Validate.
var ErrInvalidOptions = errors.New("logging: invalid options")

// Options configure the module. The zero value uses the defaults.
type Options struct {
	// MaxJobBytes bounds a job's stored log, counting each line's text and
	// newline (default DefaultMaxJobBytes).
	MaxJobBytes int64
	// Window is the credit window given to runners (default DefaultWindow,
	// at most 1024).
	Window int
	// KeyFile holds the key that seals secrets in the job files: 64 hex
	// digits. Default DATA_DIR/logging/secrets.key, created on first start.
	KeyFile string

	// syncHook, if set, runs before every fsync round (tests).
	syncHook func()
}

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case o.MaxJobBytes < 0:
		return fmt.Errorf("%w: max job bytes %d is negative", ErrInvalidOptions, o.MaxJobBytes)
	case o.Window < 0 || o.Window > maxAhead:
		return fmt.Errorf("%w: window %d is not within 0..%d", ErrInvalidOptions, o.Window, maxAhead)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.MaxJobBytes == 0 {
		o.MaxJobBytes = DefaultMaxJobBytes
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	return o
}

// Logging is the module.
type Logging struct {
	opts Options

	log    zerolog.Logger
	tr     transport.Transport
	dir    string
	keys   *seal.Box
	commit *committer
	svc    transport.Service
	runCtx context.Context // ends when the module stops
	cancel context.CancelFunc
	wg     sync.WaitGroup // closes in progress

	mu      sync.Mutex
	jobs    map[contracts.JobRef]*job
	created chan struct{}                  // closed and replaced when a job is created
	noBlob  map[contracts.JobRef]time.Time // when the blob store last said it has no log of a job

	waiters atomic.Int64 // reads waiting for lines
}

// New returns the module, constructed without side effects.
func New(opts Options) *Logging { return &Logging{opts: opts} }

// Name implements modules.Module.
func (l *Logging) Name() string { return modules.Logging }

// Start opens the data directory and serves requests.
func (l *Logging) Start(ctx context.Context, host modules.Host) error {
	if err := l.opts.Validate(); err != nil {
		return err
	}
	l.opts = l.opts.withDefaults()
	l.log = host.Logger()
	l.tr = host.Transport()
	l.dir = filepath.Join(host.DataDir(), modules.Logging)
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	keyFile := l.opts.KeyFile
	if keyFile == "" {
		keyFile = filepath.Join(l.dir, "secrets.key")
	}
	key, err := seal.LoadKey(keyFile, l.opts.KeyFile == "")
	if err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	if l.keys, err = seal.New(key); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	l.jobs = make(map[contracts.JobRef]*job)
	l.noBlob = make(map[contracts.JobRef]time.Time)
	l.created = make(chan struct{})
	l.commit = newCommitter(l.opts.syncHook)
	l.runCtx, l.cancel = context.WithCancel(context.Background())

	mux := rpc.NewMux(l.log)
	rpc.Handle(mux, l.openLog)
	rpc.Handle(mux, l.appendLog)
	rpc.Handle(mux, l.readLog)
	rpc.Handle(mux, l.closeLog)
	svc, err := mux.Serve(l.tr, contracts.ServiceLogging, transport.WithConcurrency(serveConcurrency))
	if err != nil {
		l.cancel()
		l.commit.stop()
		return fmt.Errorf("logging: serve: %w", err)
	}
	l.svc = svc
	l.log.Info().Str("dir", l.dir).Int64("max_job_bytes", l.opts.MaxJobBytes).Int("window", l.opts.Window).Msg("logging started")
	return nil
}

// Stop stops serving, writes what was accepted and closes the files.
// Later calls do nothing.
func (l *Logging) Stop(ctx context.Context) error {
	var errs []error
	if l.svc != nil {
		errs = append(errs, l.svc.Close())
		l.svc = nil
	}
	if l.cancel != nil {
		l.cancel() // closes in progress give up
		l.wg.Wait()
	}
	if l.commit != nil {
		l.commit.stop()
		l.commit = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, j := range l.jobs {
		j.mu.Lock()
		if j.f != nil {
			errs = append(errs, j.f.Close())
			j.f = nil
		}
		j.mu.Unlock()
	}
	return errors.Join(errs...)
}

// lookup returns the job, reading its file the first time. Without create
// it returns nil for a job that has no file.
func (l *Logging) lookup(ref contracts.JobRef, create bool) (*job, error) {
	l.mu.Lock()
	j, ok := l.jobs[ref]
	if !ok {
		path := jobPath(l.dir, ref)
		if !create {
			if _, err := os.Stat(path); err != nil {
				l.mu.Unlock()
				if errors.Is(err, os.ErrNotExist) {
					return nil, nil
				}
				return nil, fmt.Errorf("logging: %w", err)
			}
		}
		j = newJob(ref, path)
		l.jobs[ref] = j
		l.mu.Unlock()
		torn, err := j.load(l.keys)
		if err != nil {
			j.loadErr = err
			l.mu.Lock()
			delete(l.jobs, ref)
			l.mu.Unlock()
		} else if torn > 0 {
			l.log.Warn().Str("job", ref.String()).Int64("bytes", torn).Msg("cut a torn tail off a job's log: chunks that were never acknowledged")
		}
		close(j.loaded)
	} else {
		l.mu.Unlock()
		<-j.loaded
	}
	if j.loadErr != nil {
		return nil, j.loadErr
	}
	return j, nil
}

// jobCreated wakes reads waiting for a job to appear.
func (l *Logging) jobCreated() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.created)
	l.created = make(chan struct{})
}

// window is the credit window to give now.
func (l *Logging) window() int {
	if l.commit.backlog.Load() > backlogHigh {
		return 1
	}
	return l.opts.Window
}

func (l *Logging) credit(v visible) contracts.Credit {
	return contracts.Credit{Seq: v.seq, NextLine: v.next, Window: l.window(), Truncated: v.truncated}
}

// enqueue submits buf (the job's state already updated) for writing.
// Caller holds j.mu.
func (l *Logging) enqueue(j *job, buf []byte, index []int64, first lineAt) *write {
	j.size += int64(len(buf))
	w := &write{j: j, f: j.f, buf: buf, vis: visible{
		attempt: j.attempt, seq: j.seq, next: j.next, truncated: j.truncated,
		lines: j.stored, end: j.size, index: index, first: first, closed: j.closed,
	}}
	l.commit.submit(w)
	return w
}

// await waits for w to be durable.
func (l *Logging) await(ctx context.Context, w *write) error {
	select {
	case <-w.done:
	case <-ctx.Done():
		return contracts.NewError(contracts.CodeUnavailable, "logging: gave up waiting for the disk: "+ctx.Err().Error())
	}
	if w.err != nil {
		w.j.mu.Lock()
		if w.j.failed == nil {
			w.j.failed = w.err
		}
		w.j.mu.Unlock()
		l.log.Error().Err(w.err).Str("job", w.j.ref.String()).Msg("writing a job's log failed; it takes no more lines until the module restarts")
		return contracts.NewError(contracts.CodeInternal, w.err.Error())
	}
	return nil
}

func conflict(format string, args ...any) error {
	return contracts.NewError(contracts.CodeConflict, fmt.Sprintf(format, args...))
}
