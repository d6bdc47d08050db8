package buildscript_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/fsstore"
	"github.com/zeroci/zeroci/modules/buildscript"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is the hub, data store, blob store and scheduler on one in-process
// node, a client node, and a git repository to build.
type env struct {
	t      testing.TB
	tr     transport.Transport // the client's
	host   moduletest.Host
	opts   buildscript.Options
	src    string // the repository's work tree
	stopSc func()
}

func newEnv(t testing.TB, opts buildscript.Options) *env {
	t.Helper()
	net := inproc.NewNetwork()
	srv, client := net.Node(), net.Node()
	t.Cleanup(func() { client.Close(); srv.Close() })
	dir := t.TempDir()
	e := &env{t: t, tr: client, host: moduletest.Host{TR: srv, Log: moduletest.Logger(t), Dir: dir}, opts: opts}
	e.opts.AllowLocal = true
	moduletest.Start(t, eventhub.New(eventhub.Options{OpenLog: func(ctx context.Context, dir string) (eventlog.Log, error) {
		return filelog.Open(filepath.Join(dir, "eventhub"), filelog.Options{})
	}}), e.host)
	moduletest.Start(t, datastore.New(datastore.Options{}), e.host)
	moduletest.Start(t, blob.New(blob.Options{Open: func(ctx context.Context, dir string) (blobstore.Backend, error) {
		return fsstore.New(filepath.Join(dir, "blobstore"))
	}}), e.host)
	e.startScheduler()
	e.src = gittest.Repo(t, nil)
	return e
}

func (e *env) startScheduler() {
	e.stopSc = moduletest.Start(e.t, buildscript.New(e.opts), e.host)
}

// startGatedScheduler starts the scheduler on a transport that holds its
// requests' answers while the returned gate says so.
func (e *env) startGatedScheduler() *gate {
	g := &gate{Transport: e.host.TR}
	host := e.host
	host.TR = g
	e.stopSc = moduletest.Start(e.t, buildscript.New(e.opts), host)
	e.t.Cleanup(g.open) // before the scheduler stops: it may wait on a held answer
	return g
}

// gate is a transport whose request answers wait while hold (given the
// request) says so, until release.
type gate struct {
	transport.Transport
	mu      sync.Mutex
	hold    func(contracts.Envelope) bool
	held    chan struct{} // closed when an answer is held
	release chan struct{}
}

// holdWhen makes answers to requests that match wait for g.open.
func (g *gate) holdWhen(match func(contracts.Envelope) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hold, g.held, g.release = match, make(chan struct{}), make(chan struct{})
}

// open lets held answers go, and holds no more. It may be called again.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hold = nil
	if g.release != nil {
		close(g.release)
		g.release = nil
	}
}

func (g *gate) Request(ctx context.Context, service string, data []byte, opts ...transport.RequestOption) ([]byte, error) {
	out, err := g.Transport.Request(ctx, service, data, opts...)
	env, derr := contracts.Unmarshal(data)
	g.mu.Lock()
	hold, held, release := g.hold, g.held, g.release
	if derr != nil || hold == nil || !hold(env) {
		g.mu.Unlock()
		return out, err
	}
	g.hold = nil // one answer
	g.mu.Unlock()
	close(held)
	<-release
	return out, err
}

// git runs git in the source repository.
func (e *env) git(args ...string) string {
	e.t.Helper()
	return gittest.Git(e.t, e.src, args...)
}

// commit writes files into the work tree and commits everything.
func (e *env) commit(files map[string]string) string {
	e.t.Helper()
	return gittest.Commit(e.t, e.src, files)
}

func call[R any, PR interface {
	*R
	contracts.Message
}](e *env, req contracts.Message) R {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := rpc.Call[R, PR](ctx, e.tr, req)
	if err != nil {
		e.t.Fatalf("%s: %v", req.MessageType(), err)
	}
	return r
}

func (e *env) addRepo(name string) {
	e.t.Helper()
	call[contracts.Repo](e, contracts.CreateRepo{Name: name, URL: e.src, DefaultBranch: "main"})
}

func (e *env) trigger(repo string) int64 {
	e.t.Helper()
	b := call[contracts.Build](e, contracts.TriggerBuild{Repo: repo, Ref: "main", Event: contracts.TriggerManual})
	return b.Number
}

func (e *env) getBuild(repo string, n int64) contracts.Build {
	e.t.Helper()
	return call[contracts.Build](e, contracts.GetBuild{Repo: repo, Number: n})
}

// waitBuild polls the build until ok holds, failing after 20 s.
func (e *env) waitBuild(repo string, n int64, what string, ok func(contracts.Build) bool) contracts.Build {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b := e.getBuild(repo, n)
		if ok(b) {
			return b
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("build %s#%d never got %s: %s", repo, n, what, describe(b))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func describe(b contracts.Build) string {
	parts := []string{fmt.Sprintf("status=%s error=%q", b.Status, b.Error)}
	for _, j := range b.Jobs {
		parts = append(parts, fmt.Sprintf("%s=%s(attempt %d, %q)", j.ID, j.Status, j.Attempt, j.Reason))
	}
	return strings.Join(parts, " ")
}

func jobOf(b contracts.Build, id string) contracts.Job {
	for _, j := range b.Jobs {
		if j.ID == id {
			return j
		}
	}
	return contracts.Job{}
}

func jobIs(id string, status contracts.JobStatus) func(contracts.Build) bool {
	return func(b contracts.Build) bool { return jobOf(b, id).Status == status }
}

func buildIs(status contracts.BuildStatus) func(contracts.Build) bool {
	return func(b contracts.Build) bool { return b.Status == status }
}

// fakeRunner speaks the dispatch protocol by hand, so a test decides
// when it takes, renews and finishes work.
type fakeRunner struct {
	e      *env
	id     string
	labels map[string]string
	held   []contracts.ID // taken and not yet reported, as a real runner lists them
}

func (e *env) runner(id string, labels map[string]string) *fakeRunner {
	r := &fakeRunner{e: e, id: id, labels: labels}
	return r.hello()
}

// hello (again) introduces the runner, keeping what it holds.
func (r *fakeRunner) hello() *fakeRunner {
	e, id, labels := r.e, r.id, r.labels
	w := call[contracts.Welcome](e, contracts.RunnerHello{RunnerID: id, Capacity: 4, Labels: labels, Executor: contracts.ExecutorShell})
	if w.LeaseMs != e.opts.LeaseTimeout.Milliseconds() && e.opts.LeaseTimeout != 0 {
		e.t.Fatalf("welcome %+v, want lease %v", w, e.opts.LeaseTimeout)
	}
	return r
}

// take waits for one assignment.
func (r *fakeRunner) take() contracts.Assignment {
	r.e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		w := r.request(1, 200*time.Millisecond)
		if len(w.Assignments) == 1 {
			return w.Assignments[0]
		}
	}
	r.e.t.Fatalf("runner %s got no work", r.id)
	return contracts.Assignment{}
}

// none checks that no work comes within wait.
func (r *fakeRunner) none(wait time.Duration) {
	r.e.t.Helper()
	w := r.request(4, wait)
	if len(w.Assignments) != 0 {
		r.e.t.Fatalf("runner %s got %s, want no work", r.id, w.Assignments[0].Job.Job)
	}
}

// request asks for work once, listing the leases held, and holds what
// it gets.
func (r *fakeRunner) request(free int, wait time.Duration) contracts.Work {
	r.e.t.Helper()
	w := call[contracts.Work](r.e, contracts.RequestWork{RunnerID: r.id, Free: free, WaitMs: wait.Milliseconds(), Held: slices.Clone(r.held)})
	for _, a := range w.Assignments {
		if !slices.Contains(r.held, a.LeaseID) {
			r.held = append(r.held, a.LeaseID)
		}
	}
	return w
}

// drop forgets a lease, as a runner killed while starting it would.
func (r *fakeRunner) drop(a contracts.Assignment) {
	r.held = slices.DeleteFunc(r.held, func(id contracts.ID) bool { return id == a.LeaseID })
}

func (r *fakeRunner) renew(a contracts.Assignment) (contracts.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rpc.Call[contracts.Lease](ctx, r.e.tr, contracts.RenewLease{RunnerID: r.id, LeaseID: a.LeaseID})
}

func (r *fakeRunner) report(a contracts.Assignment, status contracts.JobStatus, exit int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now().UTC()
	res := contracts.JobResult{RunnerID: r.id, LeaseID: a.LeaseID, Job: a.Job.Job, Attempt: a.Attempt, Status: status,
		StartedAt: now.Add(-time.Millisecond), FinishedAt: now}
	if status == contracts.JobStatusSuccess || status == contracts.JobStatusFailure {
		res.ExitCode = &exit
	}
	_, err := rpc.Call[contracts.OK](ctx, r.e.tr, res)
	if err == nil || contracts.CodeOf(err) == contracts.CodeConflict {
		r.drop(a)
	}
	return err
}

func (r *fakeRunner) finish(a contracts.Assignment, status contracts.JobStatus, exit int) {
	r.e.t.Helper()
	if err := r.report(a, status, exit); err != nil {
		r.e.t.Fatalf("report %s: %v", a.Job.Job, err)
	}
}

func rpcWork(ctx context.Context, e *env, req contracts.RequestWork) (contracts.Work, error) {
	return rpc.Call[contracts.Work](ctx, e.tr, req)
}
