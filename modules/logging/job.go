package logging

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/seal"
)

const (
	// indexEvery: the job keeps the file offset of every indexEvery-th line.
	indexEvery = 1024
	// recentWrites: the job also keeps the offset of the first line of
	// each of its last recentWrites writes, where followers read next.
	recentWrites = 64
)

// lineAt is a line's offset in the job's file.
type lineAt struct {
	n   int64
	off int64
}

// visible is a job's durable state: what readers see, and what a repeated
// request is answered with.
type visible struct {
	attempt   int
	seq, next int64 // the attempt's last durable chunk, and the next line it must send
	truncated bool
	lines     int64   // lines stored
	end       int64   // file offset after the last durable record
	index     []int64 // offsets of further lines, appended to the job's index
	first     lineAt  // the write's first line, if it has lines
	closed    *closeRecord
}

// closeRecord is a close record's content.
type closeRecord struct {
	Summary contracts.LogSummary `json:"summary"`
	// Event is the log.closed event to publish (idempotently, by its ID);
	// absent for a log restored from the blob store.
	Event *contracts.Event `json:"event,omitempty"`
}

// job is one job's log.
type job struct {
	ref  contracts.JobRef
	path string

	// loaded is closed once the job's file was read (or found absent);
	// loadErr is set before if that failed.
	loaded  chan struct{}
	loadErr error

	// Ingest state, guarded by mu: what was accepted, durable or not yet.
	mu        sync.Mutex
	f         *os.File // the file, open for appending; nil before the first open and after close
	size      int64    // the file's size once everything accepted is written
	attempt   int      // the current attempt; 0 before the first open
	seq       int64    // the attempt's last accepted chunk
	next      int64    // the next line number the runner must send
	stored    int64    // lines stored
	bytes     int64    // their bytes, a newline each included
	truncated bool
	dropped   int64    // lines dropped past the size limit
	masks     []string // cleaned values to mask (all attempts)
	mask      *masker
	ctxStored bool          // the file's last context is not empty
	closing   *closeCall    // a close in progress
	closed    *closeRecord  // set with the close record (while closing, before it is durable)
	published bool          // log.closed was published by this process
	failed    error         // a write failed: the job takes no more until reopened
	accepted  chan struct{} // closed and replaced whenever seq advances

	// Committer-only state.
	werr    error
	touched bool

	// Durable state, guarded by vmu; written by the committer.
	vmu     sync.Mutex
	vis     visible
	index   []int64
	recent  [recentWrites]lineAt // a ring: write i goes to i % recentWrites
	nrecent int                  // writes with lines so far
	vfailed error
	changed chan struct{} // closed and replaced whenever vis changes

	tail tailCache // the last lines read, for followers at the tail
}

func newJob(ref contracts.JobRef, path string) *job {
	return &job{
		ref: ref, path: path, loaded: make(chan struct{}), next: 1,
		accepted: make(chan struct{}), changed: make(chan struct{}),
	}
}

// subject is the event subject of the job.
func (j *job) subject() contracts.Subject {
	return contracts.Subject{Repo: j.ref.Repo, Build: j.ref.Build, Job: j.ref.Job}
}

// blobKey is where the sealed log goes in the blob store.
func blobKey(ref contracts.JobRef) string {
	return "logs/" + ref.Repo + "/" + strconv.FormatInt(ref.Build, 10) + "/" + ref.Job + ".log"
}

// jobPath is the job's file under the module's directory dir:
// dir/jobs/<repo>/<build>/<job>.log. Repository and job names cannot
// contain a slash or be "." or "..", so they are safe path elements.
func jobPath(dir string, ref contracts.JobRef) string {
	return filepath.Join(dir, "jobs", ref.Repo, strconv.FormatInt(ref.Build, 10), ref.Job+".log")
}

// publish makes v the job's durable state and wakes its waiters. Called by
// the committer, in the order of the writes.
func (j *job) publish(v visible) {
	j.vmu.Lock()
	j.index = append(j.index, v.index...)
	v.index = nil
	if v.first.n > 0 {
		j.recent[j.nrecent%recentWrites] = v.first
		j.nrecent++
	}
	j.vis = v
	old := j.changed
	j.changed = make(chan struct{})
	j.vmu.Unlock()
	close(old)
}

// fail records that a write failed and wakes waiters.
func (j *job) fail(err error) {
	j.vmu.Lock()
	j.vfailed = err
	old := j.changed
	j.changed = make(chan struct{})
	j.vmu.Unlock()
	close(old)
}

// snapshot returns the durable state and a channel closed when it changes.
func (j *job) snapshot() (visible, error, <-chan struct{}) {
	j.vmu.Lock()
	defer j.vmu.Unlock()
	return j.vis, j.vfailed, j.changed
}

// indexAt returns a line at or before line n (n ≤ lines) and its offset,
// to start reading line n from: the closest of the index and the recent
// writes.
func (j *job) indexAt(n int64) lineAt {
	j.vmu.Lock()
	defer j.vmu.Unlock()
	i := min((n-1)/indexEvery, int64(len(j.index))-1)
	best := lineAt{n: i*indexEvery + 1, off: j.index[i]}
	for _, r := range j.recent[:min(j.nrecent, recentWrites)] {
		if r.n <= n && r.n > best.n {
			best = r
		}
	}
	return best
}

// wakeAccepted wakes chunks waiting for their predecessor. Caller holds mu.
func (j *job) wakeAccepted() {
	close(j.accepted)
	j.accepted = make(chan struct{})
}

// usable says why the job takes no appends or opens, if it does not.
// Caller holds mu.
func (j *job) usable() error {
	switch {
	case j.failed != nil:
		return contracts.NewError(contracts.CodeInternal, j.failed.Error())
	case j.closed != nil:
		return contracts.NewError(contracts.CodeConflict, fmt.Sprintf("the log of %s is closed", j.ref))
	case j.closing != nil:
		return contracts.NewError(contracts.CodeConflict, fmt.Sprintf("the log of %s is closing", j.ref))
	}
	return nil
}

// load reads the job's file, if there is one, and rebuilds its state. A
// torn tail (a partial frame, or lines without their commit) is cut off.
func (j *job) load(box *seal.Box) (tornBytes int64, err error) {
	f, err := os.OpenFile(j.path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		j.publish(visible{next: 1})
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("logging: open %s: %w", j.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, fmt.Errorf("logging: %s: %w", j.path, err)
	}
	good, err := j.replay(f, box)
	if err != nil {
		f.Close()
		return 0, err
	}
	if good < st.Size() {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return 0, fmt.Errorf("logging: cut the torn tail of %s: %w", j.path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, fmt.Errorf("logging: cut the torn tail of %s: %w", j.path, err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return 0, fmt.Errorf("logging: %s: %w", j.path, err)
	}
	if j.closed != nil {
		f.Close()
	} else {
		j.f = f
	}
	j.size = good
	return st.Size() - good, nil
}

// replay reads the records of f and sets the job's state from them. It
// returns the offset after the last record that counts.
func (j *job) replay(f *os.File, box *seal.Box) (int64, error) {
	fr := newFrameReader(f, 0, 256<<10)
	var (
		good     int64   // offset after the last counted record
		pending  int64   // lines after the last commit
		pbytes   int64   // and their bytes
		pindex   []int64 // and their index entries
		ctxBlob  []byte
		maskBlob [][]byte
	)
scan:
	for {
		typ, body, off, err := fr.next()
		if err == io.EOF || errors.Is(err, errBadFrame) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("logging: read %s: %w", j.path, err)
		}
		if j.closed != nil {
			break // nothing counts after a close
		}
		if typ == recLine {
			text, err := lineText(body)
			if err != nil {
				break
			}
			n := lineNumber(body)
			if n != j.stored+pending+1 {
				break // not the next line: damaged
			}
			if (n-1)%indexEvery == 0 {
				pindex = append(pindex, off)
			}
			pending++
			pbytes += int64(len(text)) + 1
			continue
		}
		if typ != recCommit && pending > 0 {
			break // lines without their commit
		}
		switch typ {
		case recCommit:
			c, err := decodeCommit(body)
			if err != nil {
				break scan
			}
			j.stored += pending
			j.bytes += pbytes
			j.index = append(j.index, pindex...)
			pending, pbytes, pindex = 0, 0, nil
			j.attempt, j.seq, j.next = c.attempt, c.seq, c.next
			j.dropped, j.truncated = c.dropped, c.truncated
			switch c.ctxState {
			case ctxCleared:
				ctxBlob = nil
			case ctxSealed:
				ctxBlob = c.ctx
			}
		case recOpen:
			o, err := decodeOpen(body)
			if err != nil {
				break scan
			}
			if o.attempt != j.attempt {
				ctxBlob = nil // a new attempt's output starts afresh
			}
			j.attempt, j.seq, j.next = o.attempt, o.seq, o.next
			if len(o.masks) > 0 {
				maskBlob = append(maskBlob, o.masks)
			}
		case recClose:
			var cr closeRecord
			if err := json.Unmarshal(body, &cr); err != nil {
				break scan
			}
			j.closed = &cr
		default:
			break scan
		}
		good = fr.off
	}
	// Secrets: every open's values, and the context of the last commit.
	var masks []string
	for _, b := range maskBlob {
		plain, err := box.Open(b, j.sealAD("masks"))
		if err != nil {
			return 0, fmt.Errorf("logging: %s: masks: %w", j.path, err)
		}
		var vs []string
		if err := json.Unmarshal(plain, &vs); err != nil {
			return 0, fmt.Errorf("logging: %s: masks: %w", j.path, err)
		}
		masks = append(masks, vs...)
	}
	j.masks = cleanSecrets(masks)
	j.mask = newMasker(j.masks)
	if ctxBlob != nil && j.mask != nil {
		plain, err := box.Open(ctxBlob, j.sealAD("context"))
		if err != nil {
			return 0, fmt.Errorf("logging: %s: context: %w", j.path, err)
		}
		var ctx map[contracts.Stream][]string
		if err := json.Unmarshal(plain, &ctx); err != nil {
			return 0, fmt.Errorf("logging: %s: context: %w", j.path, err)
		}
		j.mask.restore(ctx)
		j.ctxStored = true
	}
	j.vis = visible{
		attempt: j.attempt, seq: j.seq, next: j.next, truncated: j.truncated,
		lines: j.stored, end: good, closed: j.closed,
	}
	return good, nil
}

// sealAD is the additional data binding a sealed value to this job and
// its use, so that one cannot be swapped for another.
func (j *job) sealAD(use string) []byte {
	return []byte(j.ref.String() + "\x00" + use)
}
