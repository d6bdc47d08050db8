package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/fsutil"
	"github.com/zeroci/zeroci/modules/blobclient"
)

// readLog answers a read, waiting up to WaitMs for lines if there are none.
func (l *Logging) readLog(ctx context.Context, req contracts.ReadLog) (contracts.Message, error) {
	var deadline <-chan time.Time
	if req.WaitMs > 0 {
		t := time.NewTimer(time.Duration(req.WaitMs) * time.Millisecond)
		defer t.Stop()
		deadline = t.C
	}
	waiting := false
	defer func() {
		if waiting {
			l.waiters.Add(-1)
		}
	}()
	wait := func(ch <-chan struct{}) bool {
		if deadline == nil {
			return false
		}
		if !waiting {
			if l.waiters.Add(1) > maxWaiters {
				l.waiters.Add(-1)
				return false
			}
			waiting = true
		}
		select {
		case <-ch:
			return true
		case <-deadline:
		case <-ctx.Done():
		}
		return false
	}
	empty := contracts.LogLines{Job: req.Job, Lines: []contracts.LogLine{}, Next: req.From}
	gone := false
	for {
		l.mu.Lock()
		created := l.created
		l.mu.Unlock()
		j, err := l.lookup(req.Job, false)
		if err != nil {
			return nil, err
		}
		if j == nil {
			if j, err = l.restore(ctx, req.Job); err != nil {
				return nil, err
			}
		}
		if j != nil {
			res, err := l.readJob(ctx, j, req, wait)
			if errors.Is(err, errGone) && !gone {
				// The file of a closed log was removed: read its blob.
				gone = true
				l.forget(j)
				continue
			}
			return res, err
		}
		if !wait(created) {
			return empty, nil
		}
	}
}

// errGone: the file of a closed log is gone.
var errGone = errors.New("logging: the log's file is gone")

// forget drops a job from memory, so that it is read again.
func (l *Logging) forget(j *job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.jobs[j.ref] == j {
		delete(l.jobs, j.ref)
	}
}

func (l *Logging) readJob(ctx context.Context, j *job, req contracts.ReadLog, wait func(<-chan struct{}) bool) (contracts.Message, error) {
	for {
		v, _, changed := j.snapshot()
		if req.From <= v.lines {
			return l.readLines(j, v, req)
		}
		if v.closed != nil || !wait(changed) {
			return contracts.LogLines{Job: req.Job, Lines: []contracts.LogLine{}, Next: req.From, Closed: v.closed != nil}, nil
		}
	}
}

// readLines reads lines from req.From (≤ v.lines) on.
func (l *Logging) readLines(j *job, v visible, req contracts.ReadLog) (contracts.Message, error) {
	limit := int64(req.Limit)
	if limit == 0 {
		limit = contracts.MaxLogReadLines
	}
	limit = min(limit, v.lines-req.From+1)
	if v.closed == nil {
		if lines, ok := j.tail.get(req.From, limit, maxReadBytes); ok {
			next := req.From + int64(len(lines))
			return contracts.LogLines{Job: req.Job, Lines: lines, Next: next}, nil
		}
	}
	f, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) && v.closed != nil {
		return nil, errGone
	}
	if err != nil {
		return nil, fmt.Errorf("logging: read %s: %w", j.ref, err)
	}
	defer f.Close()
	start := j.indexAt(req.From).off
	fr := newFrameReader(io.NewSectionReader(f, start, v.end-start), start, int(min(v.end-start, readBuffer)))
	lines := make([]contracts.LogLine, 0, min(limit, 1024))
	budget := 0
	for int64(len(lines)) < limit {
		typ, body, _, err := fr.next()
		if err != nil {
			return nil, contracts.NewError(contracts.CodeInternal, fmt.Sprintf("logging: %s: line %d: %v", j.ref, req.From+int64(len(lines)), err))
		}
		if typ != recLine || lineNumber(body) < req.From {
			continue
		}
		ln, err := decodeLine(body)
		if err != nil {
			return nil, contracts.NewError(contracts.CodeInternal, fmt.Sprintf("logging: %s: %v", j.ref, err))
		}
		if want := req.From + int64(len(lines)); ln.N != want {
			return nil, contracts.NewError(contracts.CodeInternal, fmt.Sprintf("logging: %s: found line %d where %d should be", j.ref, ln.N, want))
		}
		budget += lineJSON + contracts.JSONStringLen(ln.Text)
		if budget > maxReadBytes && len(lines) > 0 {
			break
		}
		lines = append(lines, ln)
	}
	if v.closed == nil {
		j.tail.add(lines)
	} else {
		j.tail.reset()
	}
	next := req.From + int64(len(lines))
	return contracts.LogLines{Job: req.Job, Lines: lines, Next: next, Closed: v.closed != nil && next > v.lines}, nil
}

// restore brings back a closed log whose file is gone from its blob, if
// the blob store has one. The blob is read whole into memory.
func (l *Logging) restore(ctx context.Context, ref contracts.JobRef) (*job, error) {
	l.mu.Lock()
	missed, ok := l.noBlob[ref]
	l.mu.Unlock()
	if ok && time.Since(missed) < blobMissTTL {
		return nil, nil
	}
	key := blobKey(ref)
	sctx, cancel := context.WithTimeout(ctx, blobAskTimeout)
	_, err := blobclient.Stat(sctx, l.tr, key)
	cancel()
	if err != nil {
		if contracts.CodeOf(err) != contracts.CodeNotFound {
			l.log.Debug().Err(err).Str("job", ref.String()).Msg("could not ask the blob store for a log")
		}
		l.missedBlob(ref)
		return nil, nil
	}
	var text bytes.Buffer
	info, err := blobclient.Get(ctx, l.tr, key, &text)
	if err != nil {
		return nil, fmt.Errorf("logging: restore %s from the blob store: %w", ref, err)
	}
	if err := l.writeRestored(ref, info, text.Bytes()); err != nil {
		return nil, err
	}
	l.log.Info().Str("job", ref.String()).Int64("bytes", info.Size).Msg("restored a log from the blob store")
	return l.lookup(ref, false)
}

// missedBlob remembers that the blob store has no log of ref, and forgets
// what is too old to matter.
func (l *Logging) missedBlob(ref contracts.JobRef) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if len(l.noBlob) >= 1024 {
		for r, t := range l.noBlob {
			if now.Sub(t) >= blobMissTTL {
				delete(l.noBlob, r)
			}
		}
	}
	l.noBlob[ref] = now
}

// writeRestored writes the file of a closed log from its text: the lines
// get the blob's time and stream stdout, which is all the blob keeps.
func (l *Logging) writeRestored(ref contracts.JobRef, info contracts.BlobInfo, text []byte) error {
	path := jobPath(l.dir, ref)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("logging: restore %s: %w", ref, err)
	}
	var buf []byte
	var n int64
	var last string
	add := func(line string) {
		n++
		last = line
		buf = appendLine(buf, n, info.ModTime, contracts.StreamStdout, line)
	}
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		// The blob store holds what this module wrote, but a reader must
		// never get a line the contract refuses.
		s := strings.ToValidUTF8(string(line), "\uFFFD")
		for len(s) > contracts.MaxLogLineLen {
			c := contracts.MaxLogLineLen
			for !utf8.RuneStart(s[c]) {
				c--
			}
			add(s[:c])
			s = s[c:]
		}
		add(s)
	}
	truncated := strings.HasPrefix(last, truncationPrefix)
	buf = appendCommit(buf, commitRec{attempt: 1, next: n + 1, truncated: truncated})
	body, err := json.Marshal(closeRecord{Summary: contracts.LogSummary{Lines: n, Bytes: info.Size, BlobKey: info.Key, Truncated: truncated}})
	if err != nil {
		return fmt.Errorf("logging: restore %s: %w", ref, err)
	}
	buf = appendRaw(buf, recClose, body)
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".restore-*")
	if err != nil {
		return fmt.Errorf("logging: restore %s: %w", ref, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("logging: restore %s: %w", ref, err)
	}
	// Link, not rename: a job that was opened or restored meanwhile keeps
	// its file.
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("logging: restore %s: %w", ref, err)
	}
	return fsutil.SyncDir(filepath.Dir(path))
}
