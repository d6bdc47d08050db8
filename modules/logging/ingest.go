package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/fsutil"
)

// openLog starts an attempt, or opens the current one again.
func (l *Logging) openLog(ctx context.Context, req contracts.OpenLog) (contracts.Message, error) {
	j, err := l.lookup(req.Job, true)
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return nil, err
	}
	if req.Attempt < j.attempt {
		j.mu.Unlock()
		return nil, conflict("attempt %d of %s is over: attempt %d has started", req.Attempt, j.ref, j.attempt)
	}
	created := false
	if j.f == nil {
		if err := l.createFile(j); err != nil {
			j.mu.Unlock()
			return nil, err
		}
		created = true
	}
	if req.Attempt > j.attempt {
		j.attempt, j.seq = req.Attempt, 0
		j.mask.endStreams()
		j.ctxStored = false
		j.wakeAccepted()
	}
	vals := make([]string, len(req.Masks))
	for i, m := range req.Masks {
		vals[i] = string(m)
	}
	vals = cleanSecrets(vals)
	var sealed []byte
	if len(vals) > 0 {
		plain, _ := json.Marshal(vals) // strings always encode
		sealed = l.keys.Seal(plain, j.sealAD("masks"))
		if all := cleanSecrets(append(slices.Clone(j.masks), vals...)); !slices.Equal(all, j.masks) {
			ctx := j.mask.context()
			j.masks, j.mask = all, newMasker(all)
			j.mask.restore(ctx)
		}
	}
	buf := appendOpen(nil, openRec{attempt: j.attempt, seq: j.seq, next: j.next, masks: sealed})
	w := l.enqueue(j, buf, nil, lineAt{})
	j.mu.Unlock()
	if created {
		l.jobCreated()
	}
	if err := l.await(ctx, w); err != nil {
		return nil, err
	}
	return l.credit(w.vis), nil
}

// createFile creates the job's file. Caller holds j.mu.
func (l *Logging) createFile(j *job) error {
	dir := filepath.Dir(j.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	// The new entries (file, and maybe its build and repo directories)
	// must be durable before anything in the file is acknowledged.
	for d := dir; ; d = filepath.Dir(d) {
		if err := fsutil.SyncDir(d); err != nil {
			f.Close()
			os.Remove(j.path)
			return fmt.Errorf("logging: %w", err)
		}
		if d == l.dir || d == filepath.Dir(d) {
			break
		}
	}
	j.f = f
	return nil
}

// appendLog stores a chunk.
func (l *Logging) appendLog(ctx context.Context, req contracts.AppendLog) (contracts.Message, error) {
	j, err := l.lookup(req.Job, false)
	if err != nil {
		return nil, err
	}
	if j == nil {
		return nil, contracts.NewError(contracts.CodeNotFound, fmt.Sprintf("no log of %s: open it first (logging.open)", req.Job))
	}
	var timer <-chan time.Time
	j.mu.Lock()
	for {
		if err := j.usable(); err != nil {
			j.mu.Unlock()
			return nil, err
		}
		switch {
		case req.Attempt < j.attempt:
			j.mu.Unlock()
			return nil, conflict("attempt %d of %s is over: attempt %d has started", req.Attempt, j.ref, j.attempt)
		case req.Attempt > j.attempt:
			j.mu.Unlock()
			return nil, conflict("attempt %d of %s is not open (logging.open)", req.Attempt, j.ref)
		case req.Seq <= j.seq:
			j.mu.Unlock()
			return l.repeated(ctx, j, req.Attempt, req.Seq)
		case req.Seq > j.seq+maxAhead:
			seq := j.seq
			j.mu.Unlock()
			return nil, conflict("chunk %d of %s attempt %d: the last chunk stored is %d, and at most %d may be in flight", req.Seq, j.ref, req.Attempt, seq, maxAhead)
		}
		if req.Seq == j.seq+1 {
			break
		}
		// An earlier chunk is still on its way: wait for it.
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
			return nil, contracts.NewError(contracts.CodeUnavailable, fmt.Sprintf("chunk %d of %s came, chunk %d did not within %v: send it", req.Seq, req.Job, req.Seq-1, gapWait))
		case <-ctx.Done():
			return nil, contracts.NewError(contracts.CodeUnavailable, fmt.Sprintf("chunk %d of %s waited for chunk %d: %v", req.Seq, req.Job, req.Seq-1, ctx.Err()))
		}
		j.mu.Lock()
	}
	if first := req.Lines[0].N; first != j.next {
		next := j.next
		j.mu.Unlock()
		return nil, conflict("chunk %d of %s starts at line %d; the next line is %d", req.Seq, req.Job, first, next)
	}
	var first lineAt
	buf, index := l.encodeLines(j, req.Lines, &first)
	j.seq = req.Seq
	j.next += int64(len(req.Lines))
	buf = appendCommit(buf, l.commitRec(j))
	w := l.enqueue(j, buf, index, first)
	j.wakeAccepted()
	j.mu.Unlock()
	if err := l.await(ctx, w); err != nil {
		return nil, err
	}
	return l.credit(w.vis), nil
}

// repeated answers a chunk sent again, once it is durable.
func (l *Logging) repeated(ctx context.Context, j *job, attempt int, seq int64) (contracts.Message, error) {
	for {
		v, failed, changed := j.snapshot()
		switch {
		case failed != nil:
			return nil, contracts.NewError(contracts.CodeInternal, failed.Error())
		case v.attempt > attempt:
			return nil, conflict("attempt %d of %s is over: attempt %d has started", attempt, j.ref, v.attempt)
		case v.attempt == attempt && v.seq >= seq:
			return l.credit(v), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, contracts.NewError(contracts.CodeUnavailable, "logging: gave up waiting for the disk: "+ctx.Err().Error())
		}
	}
}

// encodeLines masks lines, applies the size limit and encodes what is
// stored. Caller holds j.mu.
func (l *Logging) encodeLines(j *job, lines []contracts.LogLine, first *lineAt) (buf []byte, index []int64) {
	size := 0
	for _, ln := range lines {
		size += frameOverhead + lineHeader + len(ln.Text)
	}
	buf = make([]byte, 0, size+frameOverhead+commitHeader)
	for _, ln := range lines {
		if j.truncated {
			j.dropped++
			continue
		}
		text := j.mask.mask(ln.Stream, ln.Text)
		stream := ln.Stream
		if j.bytes+int64(len(text))+1 > l.opts.MaxJobBytes {
			j.truncated = true
			j.dropped++
			text, stream = truncationLine(l.opts.MaxJobBytes), contracts.StreamStderr
		}
		if j.stored%indexEvery == 0 {
			index = append(index, j.size+int64(len(buf)))
		}
		if *first == (lineAt{}) {
			*first = lineAt{n: j.stored + 1, off: j.size + int64(len(buf))}
		}
		j.stored++
		j.bytes += int64(len(text)) + 1
		buf = appendLine(buf, j.stored, ln.Time, stream, text)
	}
	return buf, index
}

// commitRec is the commit record for the job's state, with the masking
// context if it changed. Caller holds j.mu.
func (l *Logging) commitRec(j *job) commitRec {
	c := commitRec{attempt: j.attempt, seq: j.seq, next: j.next, dropped: j.dropped, truncated: j.truncated}
	ctx := j.mask.context()
	switch {
	case ctx != nil:
		plain, _ := json.Marshal(ctx) // strings always encode
		c.ctxState, c.ctx = ctxSealed, l.keys.Seal(plain, j.sealAD("context"))
		j.ctxStored = true
	case j.ctxStored:
		c.ctxState = ctxCleared
		j.ctxStored = false
	}
	return c
}

// truncationLine is the line that replaces what passed the size limit.
func truncationLine(limit int64) string {
	return fmt.Sprintf("%sthe job's output passed %s; later lines were dropped", truncationPrefix, sizeText(limit))
}

// truncationPrefix begins the truncation line.
const truncationPrefix = "[zeroci] log truncated: "

func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
