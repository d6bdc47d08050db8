// Package logclient is how runners write job logs to the logging module
// and how readers follow them.
//
// A Writer numbers a job's lines, batches them into chunks
// (contracts.AppendLog), keeps up to the module's credit window of chunks
// in flight, resends a chunk whose answer does not come (with the same
// sequence number, so the module stores it once) and blocks its caller
// when the module takes lines slower than they come: nothing is dropped.
// Follow reads a log from a line on, waiting for new lines, until the log
// is closed.
package logclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Defaults of WriterOptions.
const (
	// DefaultFlushDelay is how long a line waits for more to fill its
	// chunk.
	DefaultFlushDelay = 2 * time.Millisecond
	// DefaultRequestTimeout bounds one request. The module answers an
	// append once it is on disk, so this is generous.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultBuffer is how many chunks may be sealed and not yet answered
	// before Line blocks.
	DefaultBuffer = 64
)

// Tuning.
const (
	// chunkBytes bounds a chunk's estimated JSON size, well within
	// transport.MaxPayload.
	chunkBytes = 4 << 20
	// lineJSON is a line's JSON size besides its text.
	lineJSON = 96
	// retryMin and retryMax bound the wait before a request is sent again.
	retryMin = 10 * time.Millisecond
	retryMax = time.Second
)

// ErrClosed is returned by a Writer's methods after Finish or Close.
var ErrClosed = errors.New("logclient: writer closed")

// WriterOptions tune a Writer. The zero value uses the defaults.
type WriterOptions struct {
	// FlushDelay is how long a line waits for more lines to share its
	// chunk (default DefaultFlushDelay).
	FlushDelay time.Duration
	// RequestTimeout bounds each request (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Buffer is how many chunks may wait to be sent or answered before
	// Line blocks (default DefaultBuffer).
	Buffer int
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.FlushDelay <= 0 {
		o.FlushDelay = DefaultFlushDelay
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	return o
}

// chunk is a sealed chunk.
type chunk struct {
	seq   int64
	lines []contracts.LogLine
}

// Writer writes one attempt of a job's log. Its methods are safe for
// concurrent use; lines keep the order of the calls that wrote them.
//
// Lines are split at newlines; a line over contracts.MaxLogLineLen bytes
// is cut into pieces of at least MaxLogLineLen-3 bytes (at UTF-8
// boundaries), which is how the logging module tells a cut from a line's
// end when it masks secrets. Invalid UTF-8 becomes U+FFFD.
type Writer struct {
	rq      transport.Requester
	job     contracts.JobRef
	attempt int
	masks   []contracts.Secret
	opts    WriterOptions

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the sender goroutine and the chunks' requests

	// streamMu serialises the Writes of Stdout and Stderr (one each), so
	// that concurrent Writes to one stream do not share its unfinished
	// line.
	streamMu [2]sync.Mutex

	mu        sync.Mutex
	cur       []contracts.LogLine // the chunk being filled
	curBytes  int
	flushAt   time.Time // when cur is sealed at the latest
	next      int64     // the next line's number
	seq       int64     // the last sealed chunk
	queue     []*chunk  // sealed and not sent
	inflight  int       // sent and not answered
	acked     int64     // the highest chunk the module holds
	allowed   int64     // the highest chunk that may be sent
	truncated bool
	dropped   int64
	err       error // the first fatal error
	stopping  bool  // Finish or Close started: no more lines
	finishErr error // Finish's result, once finished is closed
	finished  chan struct{}
	partial   map[contracts.Stream][]byte
	changed   chan struct{} // closed and replaced on every change
	wake      chan struct{} // wakes the sender; holds at most one signal
}

// NewWriter opens attempt of job's log (logging.open, registering the
// values to mask) and returns a Writer that sends lines until Finish or
// Close, or until ctx ends. It retries while the module is unavailable,
// until ctx ends.
func NewWriter(ctx context.Context, rq transport.Requester, job contracts.JobRef, attempt int, masks []contracts.Secret, opts WriterOptions) (*Writer, error) {
	w := &Writer{
		rq: rq, job: job, attempt: attempt, masks: masks, opts: opts.withDefaults(),
		partial: make(map[contracts.Stream][]byte),
		changed: make(chan struct{}), wake: make(chan struct{}, 1), finished: make(chan struct{}),
	}
	cr, err := w.open(ctx)
	if err != nil {
		return nil, err
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.seq, w.acked, w.next = cr.Seq, cr.Seq, cr.NextLine
	w.allowed = cr.Seq + int64(cr.Window)
	w.truncated = cr.Truncated
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// open sends logging.open until it is answered.
func (w *Writer) open(ctx context.Context) (contracts.Credit, error) {
	req := contracts.OpenLog{Job: w.job, Attempt: w.attempt, Masks: w.masks}
	var cr contracts.Credit
	err := retry(ctx, func() (err error) {
		cr, err = call[contracts.Credit](ctx, w.rq, req, w.opts.RequestTimeout)
		return err
	})
	if err != nil {
		return cr, fmt.Errorf("logclient: open %s attempt %d: %w", w.job, w.attempt, err)
	}
	return cr, nil
}

// Line writes one line (several if text has newlines; a final newline is
// ignored) to stream. It blocks while the Writer's buffer is full, and
// returns the Writer's first error if it failed.
func (w *Writer) Line(stream contracts.Stream, text string) error {
	if !stream.Valid() {
		return fmt.Errorf("logclient: unknown stream %q", stream)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	text = strings.TrimSuffix(text, "\n")
	for {
		line, rest, more := strings.Cut(text, "\n")
		if err := w.addLocked(stream, line); err != nil {
			return err
		}
		if !more {
			return nil
		}
		text = rest
	}
}

// Stdout returns an io.Writer for the job's standard output: bytes are
// split into lines at newlines; an unfinished line waits for its newline
// (or for Finish or Close, or until it is too long for one line).
func (w *Writer) Stdout() io.Writer { return streamWriter{w, contracts.StreamStdout} }

// Stderr is Stdout for the standard error.
func (w *Writer) Stderr() io.Writer { return streamWriter{w, contracts.StreamStderr} }

type streamWriter struct {
	w      *Writer
	stream contracts.Stream
}

func (s streamWriter) Write(p []byte) (int, error) {
	w := s.w
	i := 0
	if s.stream == contracts.StreamStderr {
		i = 1
	}
	w.streamMu[i].Lock()
	defer w.streamMu[i].Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	buf := append(w.partial[s.stream], p...)
	for {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			if err := w.addLocked(s.stream, string(buf[:i])); err != nil {
				return 0, err
			}
			buf = buf[i+1:]
			continue
		}
		// A line too long for one: send its first piece now. The piece
		// ends at a rune boundary; the slack keeps a rune cut by this
		// Write's end out of it.
		if len(buf) >= contracts.MaxLogLineLen+utf8.UTFMax {
			c := contracts.MaxLogLineLen
			for c > contracts.MaxLogLineLen-utf8.UTFMax && !utf8.RuneStart(buf[c]) {
				c--
			}
			if err := w.addLocked(s.stream, string(buf[:c])); err != nil {
				return 0, err
			}
			buf = buf[c:]
			continue
		}
		break
	}
	w.partial[s.stream] = append([]byte(nil), buf...)
	return len(p), nil
}

// usable returns why the Writer takes no more lines, if it does not.
// Caller holds mu.
func (w *Writer) usable() error {
	switch {
	case w.err != nil:
		return w.err
	case w.stopping:
		return ErrClosed
	}
	return w.ctx.Err()
}

// addLocked adds one line without newlines, cut into pieces if too long.
// Caller holds mu.
func (w *Writer) addLocked(stream contracts.Stream, text string) error {
	text = strings.ToValidUTF8(text, "\uFFFD")
	for {
		piece := text
		if len(piece) > contracts.MaxLogLineLen {
			c := contracts.MaxLogLineLen
			for !utf8.RuneStart(text[c]) {
				c--
			}
			piece = text[:c]
		}
		if err := w.addPieceLocked(stream, piece); err != nil {
			return err
		}
		text = text[len(piece):]
		if text == "" {
			return nil
		}
	}
}

func (w *Writer) addPieceLocked(stream contracts.Stream, text string) error {
	if w.truncated {
		// The log is full: the module would drop the line.
		w.dropped++
		return nil
	}
	// Wait for room (backpressure).
	for len(w.queue)+w.inflight >= w.opts.Buffer {
		if err := w.waitLocked(w.ctx); err != nil {
			return err
		}
		if err := w.err; err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	w.cur = append(w.cur, contracts.LogLine{N: w.next, Time: now, Stream: stream, Text: text})
	w.next++
	w.curBytes += lineJSON + contracts.JSONStringLen(text)
	switch {
	case len(w.cur) >= contracts.MaxLogChunkLines || w.curBytes >= chunkBytes:
		w.sealLocked()
	case len(w.cur) == 1:
		w.flushAt = now.Add(w.opts.FlushDelay)
		w.signal()
	}
	return nil
}

// sealLocked seals the chunk being filled. Caller holds mu.
func (w *Writer) sealLocked() {
	if len(w.cur) == 0 {
		return
	}
	w.seq++
	w.queue = append(w.queue, &chunk{seq: w.seq, lines: w.cur})
	w.cur, w.curBytes = nil, 0
	w.signal()
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// changedLocked wakes everything waiting on the Writer. Caller holds mu.
func (w *Writer) changedLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// waitLocked waits for a change, releasing mu meanwhile.
func (w *Writer) waitLocked(ctx context.Context) error {
	ch := w.changed
	w.mu.Unlock()
	defer w.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the sender: it seals chunks when their delay is up and sends
// them as the credit window allows.
func (w *Writer) run() {
	defer w.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	probing := false
	ended := w.ctx.Done()
	for {
		w.mu.Lock()
		if len(w.cur) > 0 && (w.stopping || !time.Now().Before(w.flushAt)) {
			w.sealLocked()
		}
		for len(w.queue) > 0 && w.queue[0].seq <= w.allowed && w.err == nil {
			c := w.queue[0]
			w.queue = w.queue[1:]
			w.inflight++
			w.wg.Add(1)
			go w.send(c)
		}
		// A window of zero with nothing in flight: ask again for credit.
		if len(w.queue) > 0 && w.inflight == 0 && w.err == nil && !probing {
			probing = true
			w.wg.Add(1)
			go w.probe(&probing)
		}
		var wait time.Duration = -1
		if len(w.cur) > 0 {
			wait = max(time.Until(w.flushAt), 0)
		}
		done := w.stopping && len(w.cur) == 0 && len(w.queue) == 0 && w.inflight == 0 || w.err != nil && w.inflight == 0
		w.mu.Unlock()
		if done {
			return
		}
		timer.Stop()
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-w.wake:
		case <-tc:
		case <-ended:
			ended = nil // the requests in flight end too; wait for them
			w.fail(w.ctx.Err())
		}
	}
}

// send sends one chunk until it is answered or the Writer fails.
func (w *Writer) send(c *chunk) {
	defer w.wg.Done()
	req := contracts.AppendLog{Job: w.job, Attempt: w.attempt, Seq: c.seq, Lines: c.lines}
	var cr contracts.Credit
	err := retry(w.ctx, func() (err error) {
		cr, err = call[contracts.Credit](w.ctx, w.rq, req, w.opts.RequestTimeout)
		return err
	})
	if err != nil {
		w.fail(fmt.Errorf("logclient: %s attempt %d chunk %d: %w", w.job, w.attempt, c.seq, err))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight--
	if err == nil {
		w.creditLocked(cr)
	}
	w.changedLocked()
	w.signal()
}

// probe asks for credit again after a window of zero.
func (w *Writer) probe(probing *bool) {
	defer w.wg.Done()
	t := time.NewTimer(retryMin)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.ctx.Done():
	}
	cr, err := w.open(w.ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	*probing = false
	if err != nil {
		w.failLocked(err)
	} else {
		w.creditLocked(cr)
	}
	w.changedLocked()
	w.signal()
}

// creditLocked takes in a credit. Caller holds mu.
func (w *Writer) creditLocked(cr contracts.Credit) {
	if cr.Seq >= w.acked {
		w.acked = cr.Seq
		w.allowed = cr.Seq + int64(cr.Window)
	}
	if cr.Truncated {
		w.truncated = true
	}
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failLocked(err)
	w.changedLocked()
	w.signal()
}

func (w *Writer) failLocked(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Flush sends the lines written so far (not an unfinished line of Stdout
// or Stderr) and waits until the module holds them.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sealLocked()
	for w.acked < w.seq {
		if w.err != nil {
			return w.err
		}
		if err := w.waitLocked(ctx); err != nil {
			return err
		}
	}
	return w.err
}

// Finish ends the attempt's output without closing the log (another
// attempt may follow): it sends unfinished lines of Stdout and Stderr as
// lines, waits until the module holds everything and stops the Writer.
// Later calls return ErrClosed.
func (w *Writer) Finish(ctx context.Context) error {
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		return ErrClosed
	}
	for _, s := range []contracts.Stream{contracts.StreamStdout, contracts.StreamStderr} {
		if p := w.partial[s]; len(p) > 0 && w.err == nil {
			delete(w.partial, s)
			if err := w.addLocked(s, string(p)); err != nil {
				w.failLocked(err)
			}
		}
	}
	w.stopping = true
	w.sealLocked()
	w.signal()
	w.mu.Unlock()
	err := w.Flush(ctx)
	if err != nil {
		w.cancel() // give up: the sender and its requests end
	}
	w.wg.Wait()
	w.cancel()
	w.mu.Lock()
	w.finishErr = err
	w.mu.Unlock()
	close(w.finished)
	return err
}

// Close finishes the attempt (Finish) and closes the job's log
// (logging.close): the module seals it into the blob store and publishes
// log.closed. It retries while the module is unavailable, until ctx ends.
//
// Close after Finish closes the log of the finished attempt: a runner
// finishes the output, reports the job's end and only then closes the log.
func (w *Writer) Close(ctx context.Context) (contracts.LogSummary, error) {
	if err := w.Finish(ctx); errors.Is(err, ErrClosed) {
		select { // finished before: close if that went well
		case <-w.finished:
		case <-ctx.Done():
			return contracts.LogSummary{}, ctx.Err()
		}
		w.mu.Lock()
		err = w.finishErr
		w.mu.Unlock()
		if err != nil {
			return contracts.LogSummary{}, err
		}
	} else if err != nil {
		return contracts.LogSummary{}, err
	}
	w.mu.Lock()
	req := contracts.CloseLog{Job: w.job, Attempt: w.attempt, Seq: w.seq}
	w.mu.Unlock()
	var sum contracts.LogSummary
	err := retry(ctx, func() (err error) {
		sum, err = call[contracts.LogSummary](ctx, w.rq, req, w.opts.RequestTimeout)
		return err
	})
	if err != nil {
		return sum, fmt.Errorf("logclient: close %s: %w", w.job, err)
	}
	return sum, nil
}

// Truncated reports whether the module said the log reached its size
// limit; lines written since are dropped here (Dropped counts them).
func (w *Writer) Truncated() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.truncated
}

// Dropped is how many lines the Writer dropped since the log was
// truncated.
func (w *Writer) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// call sends one request with a timeout.
func call[R any, PR interface {
	*R
	contracts.Message
}](ctx context.Context, rq transport.Requester, req contracts.Message, timeout time.Duration) (R, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return rpc.Call[R, PR](ctx, rq, req, transport.Idempotent())
}

// retry calls f until it succeeds, fails with another code than
// unavailable, or ctx ends.
func retry(ctx context.Context, f func() error) error {
	backoff := retryMin
	for {
		err := f()
		if err == nil || contracts.CodeOf(err) != contracts.CodeUnavailable {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, retryMax)
	}
}
