package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/hubclient"
)

// closeLog completes a log: seals it into the blob store and publishes
// log.closed. A closed log answers its summary again.
func (l *Logging) closeLog(ctx context.Context, req contracts.CloseLog) (contracts.Message, error) {
	j, err := l.lookup(req.Job, false)
	if err != nil {
		return nil, err
	}
	if j == nil {
		return nil, contracts.NewError(contracts.CodeNotFound, fmt.Sprintf("no log of %s", req.Job))
	}
	var timer <-chan time.Time
	for {
		j.mu.Lock()
		if c := j.closing; c != nil {
			j.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, contracts.NewError(contracts.CodeUnavailable, "logging: close: "+ctx.Err().Error())
			}
			continue
		}
		if j.closed != nil {
			cr := j.closed
			j.mu.Unlock()
			return l.announce(ctx, j, cr)
		}
		if err := j.usable(); err != nil {
			j.mu.Unlock()
			return nil, err
		}
		if req.Stored {
			req.Seq = j.seq
		}
		switch {
		case req.Attempt != j.attempt:
			attempt := j.attempt
			j.mu.Unlock()
			return nil, conflict("close of %s names attempt %d; the current attempt is %d", req.Job, req.Attempt, attempt)
		case req.Seq < j.seq:
			seq := j.seq
			j.mu.Unlock()
			return nil, conflict("close of %s says the last chunk is %d, but chunk %d is stored", req.Job, req.Seq, seq)
		case req.Seq > j.seq:
			if timer == nil {
				t := time.NewTimer(gapWait)
				defer t.Stop()
				timer = t.C
			}
			accepted := j.accepted
			j.mu.Unlock()
			select {
			case <-accepted:
			case <-timer:
				return nil, contracts.NewError(contracts.CodeUnavailable, fmt.Sprintf("close of %s: chunk %d did not come within %v", req.Job, req.Seq, gapWait))
			case <-ctx.Done():
				return nil, contracts.NewError(contracts.CodeUnavailable, "logging: close: "+ctx.Err().Error())
			}
			continue
		}
		// The close goes on without the caller: a caller that gives up
		// and asks again waits for the same one.
		c := &closeCall{done: make(chan struct{})}
		j.closing = c
		j.wakeAccepted() // chunks waiting for a predecessor: there is none
		j.mu.Unlock()
		l.wg.Add(1)
		go l.close(j, c)
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, contracts.NewError(contracts.CodeUnavailable, "logging: close: "+ctx.Err().Error())
		}
		if c.err != nil {
			return nil, c.err
		}
		return c.sum, nil
	}
}

// closeCall is a close in progress. Its result is set before done is
// closed.
type closeCall struct {
	done chan struct{}
	sum  contracts.LogSummary
	err  error
}

// close seals the job's log and publishes log.closed, within closeTimeout
// or until the module stops.
func (l *Logging) close(j *job, c *closeCall) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(l.runCtx, closeTimeout)
	defer cancel()
	cr, err := l.sealLog(ctx, j)
	if err == nil {
		var msg contracts.Message
		if msg, err = l.announce(ctx, j, cr); err == nil {
			c.sum = msg.(contracts.LogSummary)
		}
	}
	if err != nil {
		l.log.Warn().Err(err).Str("job", j.ref.String()).Msg("closing a log failed")
	}
	j.mu.Lock()
	j.closing = nil
	j.mu.Unlock()
	c.err = err
	close(c.done)
}

// sealLog stores the log as a blob and writes the close record. The job is
// closing: nothing else changes it meanwhile.
func (l *Logging) sealLog(ctx context.Context, j *job) (*closeRecord, error) {
	j.mu.Lock()
	lines, nbytes, size, truncated, dropped := j.stored, j.bytes, j.size, j.truncated, j.dropped
	j.mu.Unlock()
	// Wait for everything accepted to be durable.
	for {
		v, failed, changed := j.snapshot()
		if failed != nil {
			return nil, contracts.NewError(contracts.CodeInternal, failed.Error())
		}
		if v.end >= size {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, contracts.NewError(contracts.CodeUnavailable, "logging: close: "+ctx.Err().Error())
		}
	}
	key := blobKey(j.ref)
	f, err := os.Open(j.path)
	if err != nil {
		return nil, fmt.Errorf("logging: close %s: %w", j.ref, err)
	}
	text := &textReader{fr: newFrameReader(io.NewSectionReader(f, 0, size), 0, readBuffer)}
	info, err := blobclient.Put(ctx, l.tr, key, "text/plain; charset=utf-8", text)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("logging: close %s: %w", j.ref, err)
	}
	if info.Size != nbytes {
		return nil, contracts.NewError(contracts.CodeInternal, fmt.Sprintf("logging: close %s: sealed %d bytes, but %d are stored", j.ref, info.Size, nbytes))
	}
	sum := contracts.LogSummary{Lines: lines, Bytes: info.Size, BlobKey: key, Truncated: truncated}
	ev, err := contracts.NewEvent(j.subject(), contracts.LogClosed{Lines: sum.Lines, Bytes: sum.Bytes, BlobKey: key, Truncated: truncated})
	if err != nil {
		return nil, fmt.Errorf("logging: close %s: %w", j.ref, err)
	}
	cr := &closeRecord{Summary: sum, Event: &ev}
	body, err := json.Marshal(cr)
	if err != nil {
		return nil, fmt.Errorf("logging: close %s: %w", j.ref, err)
	}
	j.mu.Lock()
	j.closed = cr
	w := l.enqueue(j, appendRaw(nil, recClose, body), nil, lineAt{})
	j.mu.Unlock()
	if err := l.await(ctx, w); err != nil {
		j.mu.Lock()
		j.closed = nil
		j.mu.Unlock()
		return nil, err
	}
	j.mu.Lock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	j.masks, j.mask = nil, nil // no longer needed: let the secrets go
	j.mu.Unlock()
	l.log.Info().Str("job", j.ref.String()).Int64("lines", lines).Int64("bytes", sum.Bytes).
		Bool("truncated", truncated).Int64("dropped", dropped).Msg("log closed")
	return cr, nil
}

// announce publishes the log.closed event of a closed log (once per
// process; the hub ignores a repeat of the same event ID) and returns the
// summary.
func (l *Logging) announce(ctx context.Context, j *job, cr *closeRecord) (contracts.Message, error) {
	j.mu.Lock()
	done := j.published || cr.Event == nil
	j.mu.Unlock()
	if done {
		return cr.Summary, nil
	}
	backoff := 10 * time.Millisecond
	for {
		_, err := hubclient.Publish(ctx, l.tr, *cr.Event)
		if err == nil {
			break
		}
		if contracts.CodeOf(err) != contracts.CodeUnavailable || ctx.Err() != nil {
			return nil, fmt.Errorf("logging: publish log.closed of %s: %w", j.ref, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("logging: publish log.closed of %s: %w", j.ref, err)
		}
		backoff = min(2*backoff, publishBackoffMax)
	}
	j.mu.Lock()
	j.published = true
	j.mu.Unlock()
	return cr.Summary, nil
}

// textReader reads a job's file as the text of its lines, each with a
// newline: the sealed log.
type textReader struct {
	fr      *frameReader
	pending []byte
	buf     []byte
	err     error
}

func (t *textReader) Read(p []byte) (int, error) {
	for len(t.pending) == 0 {
		if t.err != nil {
			return 0, t.err
		}
		typ, body, _, err := t.fr.next()
		if err != nil {
			t.err = err
			continue
		}
		if typ != recLine {
			continue
		}
		text, err := lineText(body)
		if err != nil {
			t.err = err
			continue
		}
		t.buf = append(append(t.buf[:0], text...), '\n')
		t.pending = t.buf
	}
	n := copy(p, t.pending)
	t.pending = t.pending[n:]
	return n, nil
}
