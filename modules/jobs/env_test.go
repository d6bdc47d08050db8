//go:build unix

package jobs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/fsstore"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/jobs"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/logging"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	repo     = "web"
	runnerID = "r1"
	build    = 1
)

// env is the platform a runner needs, on one in-process network: the
// event hub, data store, blob store and logging module on one node, the
// test's dispatcher (standing in for the scheduler) and client on another,
// and the runner on a third.
type env struct {
	t      *testing.T
	net    *inproc.Network
	client transport.Transport
	disp   *dispatcher
	commit string // of the source tree in the blob store
	out    string // a directory outside every workspace, for scripts' traces
}

func newEnv(t *testing.T) *env {
	t.Helper()
	net := inproc.NewNetwork()
	srv, client := net.Node(), net.Node()
	t.Cleanup(func() { client.Close(); srv.Close() })
	host := moduletest.Host{TR: srv, Log: moduletest.Logger(t), Dir: t.TempDir()}
	moduletest.Start(t, eventhub.New(eventhub.Options{OpenLog: func(ctx context.Context, dir string) (eventlog.Log, error) {
		return filelog.Open(filepath.Join(dir, "events"), filelog.Options{})
	}}), host)
	moduletest.Start(t, datastore.New(datastore.Options{}), host)
	moduletest.Start(t, blob.New(blob.Options{Open: func(ctx context.Context, dir string) (blobstore.Backend, error) {
		return fsstore.New(filepath.Join(dir, "blobstore"))
	}}), host)
	moduletest.Start(t, logging.New(logging.Options{}), host)
	e := &env{t: t, net: net, client: client, disp: newDispatcher(), out: t.TempDir()}
	e.commit = e.putSource(map[string]string{
		"README":       "hello\n",
		"go.sum":       "deps v1\n",
		"tools/run.sh": "#!/bin/sh\necho run.sh ran\n",
	})
	return e
}

// serveDispatch serves the dispatcher on the client node.
func (e *env) serveDispatch() {
	e.t.Helper()
	svc, err := e.disp.mux(e.t).Serve(e.client, contracts.ServiceDispatch)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { svc.Close() })
}

// startRunner starts a runner on its own node; it stops when the test ends
// (or earlier, with the returned func).
func (e *env) startRunner(o jobs.Options) (*jobs.Runner, func()) {
	e.t.Helper()
	return e.startRunnerIn(o, e.t.TempDir())
}

// startRunnerIn starts a runner with data dir dir.
func (e *env) startRunnerIn(o jobs.Options, dir string) (*jobs.Runner, func()) {
	e.t.Helper()
	if o.RunnerID == "" {
		o.RunnerID = runnerID
	}
	if o.WaitMs == 0 {
		o.WaitMs = 200
	}
	node := e.net.Node()
	e.t.Cleanup(func() { node.Close() })
	r := jobs.New(o)
	stop := moduletest.Start(e.t, r, moduletest.Host{TR: node, Log: moduletest.Logger(e.t), Dir: dir})
	return r, stop
}

// putSource commits files (paths ending in .sh are executable) in a new
// git repository and stores its `git archive` under the source key.
func (e *env) putSource(files map[string]string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			e.t.Fatalf("git %v: %v: %s", args, err, stderr.String())
		}
		return out.String()
	}
	git("init", "-q", "-b", "main")
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			e.t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			e.t.Fatal(err)
		}
	}
	git("add", "-A")
	git("commit", "-q", "-m", "source")
	commit := strings.TrimSpace(git("rev-parse", "HEAD"))
	e.putBlob(contracts.SourceKey(repo, commit), []byte(git("archive", "--format=tar", "HEAD")))
	return commit
}

func (e *env) putBlob(key string, data []byte) {
	e.t.Helper()
	if _, err := blobclient.Put(ctxT(e.t), e.client, key, "application/octet-stream", bytes.NewReader(data)); err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

// assign queues an assignment of job with script; mod adjusts it.
func (e *env) assign(job string, script []string, mod func(*contracts.Assignment)) contracts.Assignment {
	e.t.Helper()
	a := contracts.Assignment{
		LeaseID: contracts.NewID(time.Now()), Deadline: time.Now().Add(time.Minute), Attempt: 1, MaxAttempts: 1,
		Job: contracts.JobSpec{
			Job: ref(job), URL: "https://git.example.com/web.git", Ref: "refs/heads/main", Commit: e.commit,
			Script: script, Env: map[string]string{"OUT": e.out}, TimeoutMs: 60_000,
		},
	}
	if mod != nil {
		mod(&a)
	}
	e.disp.add(e.t, a)
	return a
}

// logText reads a job's whole log and whether it is closed.
func (e *env) logText(job string) (string, bool) {
	e.t.Helper()
	var b strings.Builder
	from := int64(1)
	for {
		res, err := logclient.Read(ctxT(e.t), e.client, ref(job), from, 0)
		if err != nil {
			e.t.Fatalf("read log of %s: %v", job, err)
		}
		for _, l := range res.Lines {
			b.WriteString(l.Text + "\n")
		}
		if len(res.Lines) == 0 {
			return b.String(), res.Closed
		}
		from = res.Next
	}
}

// waitFile waits until the script created path and returns its content.
func (e *env) waitFile(name string) string {
	e.t.Helper()
	var data []byte
	eventually(e.t, 30*time.Second, "file "+name, func() bool {
		var err error
		data, err = os.ReadFile(filepath.Join(e.out, name))
		return err == nil && bytes.HasSuffix(data, []byte("\n"))
	})
	return strings.TrimSpace(string(data))
}

func ref(job string) contracts.JobRef { return contracts.JobRef{Repo: repo, Build: build, Job: job} }

func ctxT(t testing.TB) context.Context { return moduletest.Context(t, time.Minute) }

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // a poll interval, not a wait for the condition
	}
}

// dispatcher is a stand-in for the scheduler's dispatch service: it hands
// out the assignments a test queues, renews leases (cancelling or losing
// them on demand) and records results.
type dispatcher struct {
	welcome contracts.Welcome

	mu       sync.Mutex
	queue    []contracts.Assignment
	out      map[contracts.ID]bool // handed out, not reported
	maxOut   int
	results  map[contracts.ID]contracts.JobResult
	reports  int
	renewals map[contracts.ID]int
	cancel   map[contracts.ID]string // cancel on the next renewal, with this reason
	lost     map[contracts.ID]bool   // renewals and results get conflict
	hellos   []contracts.RunnerHello
	held     [][]contracts.ID // the held list of every request_work
	changed  chan struct{}    // closed and replaced on every change
}

func newDispatcher() *dispatcher {
	return &dispatcher{
		welcome: contracts.Welcome{LeaseMs: 2000, HeartbeatMs: 100},
		out:     map[contracts.ID]bool{}, results: map[contracts.ID]contracts.JobResult{},
		renewals: map[contracts.ID]int{}, cancel: map[contracts.ID]string{}, lost: map[contracts.ID]bool{},
		changed: make(chan struct{}),
	}
}

// changedLocked wakes waiters. Caller holds mu.
func (d *dispatcher) changedLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *dispatcher) add(t testing.TB, a contracts.Assignment) {
	if err := (contracts.Work{Assignments: []contracts.Assignment{a}}).Validate(); err != nil {
		t.Fatalf("bad assignment: %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue = append(d.queue, a)
	d.changedLocked()
}

func (d *dispatcher) mux(t testing.TB) *rpc.Mux {
	m := rpc.NewMux(moduletest.Logger(t))
	rpc.Handle(m, func(ctx context.Context, h contracts.RunnerHello) (contracts.Message, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.hellos = append(d.hellos, h)
		return d.welcome, nil
	})
	rpc.Handle(m, d.requestWork)
	rpc.Handle(m, func(ctx context.Context, req contracts.RenewLease) (contracts.Message, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.lost[req.LeaseID] {
			return nil, contracts.NewError(contracts.CodeConflict, "lease lost")
		}
		d.renewals[req.LeaseID]++
		d.changedLocked()
		l := contracts.Lease{LeaseID: req.LeaseID, Deadline: time.Now().Add(time.Duration(d.welcome.LeaseMs) * time.Millisecond)}
		if reason, ok := d.cancel[req.LeaseID]; ok {
			l.Cancel, l.Reason = true, reason
		}
		return l, nil
	})
	rpc.Handle(m, func(ctx context.Context, res contracts.JobResult) (contracts.Message, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.reports++
		if d.lost[res.LeaseID] {
			return nil, contracts.NewError(contracts.CodeConflict, "lease lost")
		}
		d.results[res.LeaseID] = res
		delete(d.out, res.LeaseID)
		d.changedLocked()
		return contracts.OK{}, nil
	})
	return m
}

// requestWork hands out up to Free queued assignments, waiting up to
// WaitMs for one.
func (d *dispatcher) requestWork(ctx context.Context, req contracts.RequestWork) (contracts.Message, error) {
	timer := time.NewTimer(time.Duration(req.WaitMs) * time.Millisecond)
	defer timer.Stop()
	d.mu.Lock()
	d.held = append(d.held, req.Held)
	d.changedLocked()
	d.mu.Unlock()
	for {
		d.mu.Lock()
		if n := min(req.Free, len(d.queue)); n > 0 {
			work := contracts.Work{Assignments: append([]contracts.Assignment(nil), d.queue[:n]...)}
			d.queue = d.queue[n:]
			for _, a := range work.Assignments {
				d.out[a.LeaseID] = true
			}
			d.maxOut = max(d.maxOut, len(d.out))
			d.changedLocked()
			d.mu.Unlock()
			return work, nil
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return contracts.Work{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// wait waits until cond (called with mu held) holds.
func (d *dispatcher) wait(t testing.TB, dur time.Duration, what string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(dur)
	defer timer.Stop()
	for {
		d.mu.Lock()
		ok, ch := cond(), d.changed
		d.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out after %v waiting for %s", dur, what)
		}
	}
}

// result waits for the result of a's lease.
func (d *dispatcher) result(t testing.TB, a contracts.Assignment) contracts.JobResult {
	t.Helper()
	var res contracts.JobResult
	d.wait(t, time.Minute, "the result of "+a.Job.Job.String(), func() bool {
		var ok bool
		res, ok = d.results[a.LeaseID]
		return ok
	})
	return res
}

// setCancel makes the next renewal of a's lease cancel it.
func (d *dispatcher) setCancel(a contracts.Assignment, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancel[a.LeaseID] = reason
}

// setLost makes a's lease refused from now on.
func (d *dispatcher) setLost(a contracts.Assignment) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lost[a.LeaseID] = true
}

func moduletestHost(t testing.TB, tr transport.Transport, dir string) moduletest.Host {
	return moduletest.Host{TR: tr, Log: moduletest.Logger(t), Dir: dir}
}

// tarEntry is a file (body) or a symlink (link) of a test archive.
type tarEntry struct {
	name, body, link string
}

// makeTar builds a plain tar of entries, unchecked.
func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range entries {
		h := &tar.Header{Name: en.name, Mode: 0o644, Size: int64(len(en.body)), Typeflag: tar.TypeReg}
		if en.link != "" {
			h = &tar.Header{Name: en.name, Mode: 0o777, Linkname: en.link, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(en.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
