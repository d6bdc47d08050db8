package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pgtest"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/datastore/store"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a hub and a data store on one in-process network, and a client.
type env struct {
	t      *testing.T
	client transport.Transport
	host   moduletest.Host
	opts   datastore.Options
	stopDS func()
}

type driver struct {
	name string
	opts func(t *testing.T, dir string) datastore.Options
}

func drivers() []driver {
	return []driver{
		{"sqlite", func(t *testing.T, dir string) datastore.Options { return datastore.Options{Driver: store.DriverSQLite} }},
		{"postgres", func(t *testing.T, dir string) datastore.Options {
			return datastore.Options{Driver: store.DriverPostgres, DSN: pgtest.Schema(t)}
		}},
	}
}

// forEachDriver runs f against a fresh environment on every driver.
func forEachDriver(t *testing.T, f func(t *testing.T, e *env)) {
	for _, d := range drivers() {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			f(t, newEnv(t, dir, d.opts(t, dir)))
		})
	}
}

func newEnv(t *testing.T, dir string, opts datastore.Options) *env {
	t.Helper()
	net := inproc.NewNetwork()
	tr, client := net.Node(), net.Node()
	t.Cleanup(func() { client.Close(); tr.Close() })
	host := moduletest.Host{TR: tr, Log: moduletest.Logger(t), Dir: dir}
	hub := eventhub.New(eventhub.Options{OpenLog: func(ctx context.Context, dataDir string) (eventlog.Log, error) {
		return filelog.Open(filepath.Join(dataDir, "events"), filelog.Options{})
	}})
	moduletest.Start(t, hub, host)
	e := &env{t: t, client: client, host: host, opts: opts}
	e.stopDS = moduletest.Start(t, datastore.New(opts), host)
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func call[R any, PR interface {
	*R
	contracts.Message
}](t *testing.T, e *env, req contracts.Message) R {
	t.Helper()
	r, err := rpc.Call[R, PR](ctxT(t), e.client, req)
	if err != nil {
		t.Fatalf("%s: %v", req.MessageType(), err)
	}
	return r
}

// wantCode checks a request fails with code.
func wantCode(t *testing.T, e *env, req contracts.Message, code contracts.Code) {
	t.Helper()
	_, err := rpc.Do(ctxT(t), e.client, req)
	if contracts.CodeOf(err) != code {
		t.Fatalf("%s %+v: %v, want %s", req.MessageType(), req, err, code)
	}
}

func TestRepos(t *testing.T) {
	forEachDriver(t, func(t *testing.T, e *env) {
		r := call[contracts.Repo](t, e, contracts.CreateRepo{Name: "web", URL: "https://git.example.com/web.git", WebhookSecret: "s3cret", PollSeconds: 60})
		if r.Name != "web" || r.DefaultBranch != "main" || !r.HasWebhookSecret || !r.Polled() || r.CreatedAt.IsZero() {
			t.Fatalf("created %+v", r)
		}
		wantCode(t, e, contracts.CreateRepo{Name: "web", URL: "https://x/y.git"}, contracts.CodeConflict)
		wantCode(t, e, contracts.CreateRepo{Name: "Bad Name", URL: "https://x/y.git"}, contracts.CodeInvalidArgument)
		wantCode(t, e, contracts.GetRepo{Name: "nope"}, contracts.CodeNotFound)
		if ws := call[contracts.WebhookSecret](t, e, contracts.GetWebhookSecret{Repo: "web"}); ws.Secret != "s3cret" {
			t.Fatalf("webhook secret %q", string(ws.Secret))
		}
		for _, n := range []string{"a", "b", "c", "d"} {
			call[contracts.Repo](t, e, contracts.CreateRepo{Name: n, URL: "https://x/" + n + ".git", DefaultBranch: "trunk"})
		}
		var names []string
		after := ""
		for {
			page := call[contracts.RepoList](t, e, contracts.ListRepos{Limit: 2, After: after})
			for _, r := range page.Repos {
				names = append(names, r.Name)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if !slices.Equal(names, []string{"a", "b", "c", "d", "web"}) {
			t.Fatalf("paged list %v", names)
		}
		call[contracts.OK](t, e, contracts.DeleteRepo{Name: "web"})
		wantCode(t, e, contracts.GetRepo{Name: "web"}, contracts.CodeNotFound)
		wantCode(t, e, contracts.DeleteRepo{Name: "web"}, contracts.CodeNotFound)
	})
}

// 100 concurrent triggers on one repository (and 50 on another) get the
// numbers 1..100 (1..50), each once.
func TestConcurrentTriggersNumberWithoutGaps(t *testing.T) {
	forEachDriver(t, func(t *testing.T, e *env) {
		call[contracts.Repo](t, e, contracts.CreateRepo{Name: "web", URL: "https://x/web.git"})
		call[contracts.Repo](t, e, contracts.CreateRepo{Name: "api", URL: "https://x/api.git"})
		var mu sync.Mutex
		got := map[string][]int64{}
		var wg sync.WaitGroup
		for i := range 150 {
			repo := "web"
			if i%3 == 2 {
				repo = "api"
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := rpc.Call[contracts.Build](ctxT(t), e.client, contracts.TriggerBuild{Repo: repo, Event: contracts.TriggerManual})
				if err != nil {
					t.Errorf("trigger: %v", err)
					return
				}
				mu.Lock()
				got[repo] = append(got[repo], b.Number)
				mu.Unlock()
			}()
		}
		wg.Wait()
		for repo, n := range map[string]int{"web": 100, "api": 50} {
			nums := got[repo]
			slices.Sort(nums)
			if len(nums) != n || nums[0] != 1 || nums[n-1] != int64(n) || len(slices.Compact(nums)) != n {
				t.Fatalf("%s: numbers %v, want 1..%d once each", repo, nums, n)
			}
		}
		list := call[contracts.BuildList](t, e, contracts.ListBuilds{Repo: "web", Limit: 3})
		if len(list.Builds) != 3 || list.Builds[0].Number != 100 || list.Builds[2].Number != 98 {
			t.Fatalf("newest first: %+v", list.Builds)
		}
	})
}

func jobOf(b contracts.Build, id string) contracts.Job {
	for _, j := range b.Jobs {
		if j.ID == id {
			return j
		}
	}
	return contracts.Job{}
}

func TestBuildLifecycle(t *testing.T) {
	forEachDriver(t, func(t *testing.T, e *env) {
		call[contracts.Repo](t, e, contracts.CreateRepo{Name: "web", URL: "https://x/web.git"})
		b := call[contracts.Build](t, e, contracts.TriggerBuild{Repo: "web", Params: map[string]string{"K": "v"}, Event: contracts.TriggerManual, User: "ann"})
		if b.Number != 1 || b.Status != contracts.BuildStatusQueued || b.Ref != "main" || b.Params["K"] != "v" {
			t.Fatalf("triggered %+v", b)
		}
		commit := strings.Repeat("ab", 20)
		b = call[contracts.Build](t, e, contracts.PlanBuild{Repo: "web", Number: 1, Commit: commit, Jobs: []contracts.PlannedJob{
			{ID: "build"}, {ID: "test", DependsOn: []string{"build"}}, {ID: "deploy", DependsOn: []string{"test"}, Manual: true},
		}})
		if b.Status != contracts.BuildStatusRunning || b.Commit != commit || len(b.Jobs) != 3 || jobOf(b, "deploy").Status != contracts.JobStatusBlocked {
			t.Fatalf("planned %+v", b)
		}
		wantCode(t, e, contracts.PlanBuild{Repo: "web", Number: 1, Commit: commit, Jobs: []contracts.PlannedJob{{ID: "x"}}}, contracts.CodeConflict)
		ref := func(job string) contracts.JobRef { return contracts.JobRef{Repo: "web", Build: 1, Job: job} }
		now := time.Now().UTC()
		b = call[contracts.Build](t, e, contracts.UpdateJob{Job: ref("test"), Status: contracts.JobStatusPending, Reason: "waiting for dependency build", Time: now})
		if j := jobOf(b, "test"); j.Reason != "waiting for dependency build" {
			t.Fatalf("pending reason: %+v", j)
		}
		call[contracts.Build](t, e, contracts.UpdateJob{Job: ref("build"), Status: contracts.JobStatusQueued, Attempt: 1, Time: now})
		lease := contracts.NewID(now)
		b = call[contracts.Build](t, e, contracts.UpdateJob{Job: ref("build"), Status: contracts.JobStatusRunning, Attempt: 1, RunnerID: "r1", LeaseID: lease, Time: now})
		if j := jobOf(b, "build"); j.Status != contracts.JobStatusRunning || j.RunnerID != "r1" || j.StartedAt.IsZero() {
			t.Fatalf("running %+v", j)
		}
		// The runner dies; the scheduler re-queues attempt 2; attempt 1's
		// late result is refused.
		call[contracts.Build](t, e, contracts.UpdateJob{Job: ref("build"), Status: contracts.JobStatusQueued, Attempt: 2, Time: now})
		zero := 0
		wantCode(t, e, contracts.UpdateJob{Job: ref("build"), Status: contracts.JobStatusSuccess, Attempt: 1, ExitCode: &zero, Time: now}, contracts.CodeConflict)
		call[contracts.Build](t, e, contracts.UpdateJob{Job: ref("build"), Status: contracts.JobStatusRunning, Attempt: 2, RunnerID: "r2", Time: now})
		b = call[contracts.Build](t, e, contracts.UpdateJob{Job: ref("build"), Status: contracts.JobStatusSuccess, Attempt: 2, ExitCode: &zero, Time: now.Add(time.Second)})
		if j := jobOf(b, "build"); j.Status != contracts.JobStatusSuccess || j.Attempt != 2 || j.ExitCode == nil || *j.ExitCode != 0 || j.FinishedAt.IsZero() {
			t.Fatalf("finished %+v", j)
		}
		wantCode(t, e, contracts.UpdateJob{Job: ref("build"), Status: contracts.JobStatusFailure, Attempt: 2, Time: now}, contracts.CodeConflict)
		wantCode(t, e, contracts.UpdateJob{Job: ref("nope"), Status: contracts.JobStatusQueued, Attempt: 1, Time: now}, contracts.CodeNotFound)
		wantCode(t, e, contracts.ApproveJob{Repo: "web", Number: 1, Job: "test"}, contracts.CodeConflict)
		b = call[contracts.Build](t, e, contracts.ApproveJob{Repo: "web", Number: 1, Job: "deploy", User: "ann"})
		if j := jobOf(b, "deploy"); j.Status != contracts.JobStatusPending {
			t.Fatalf("approved %+v", j)
		}
		// Cancel with nothing running: waiting jobs and the build end now.
		b = call[contracts.Build](t, e, contracts.CancelBuild{Repo: "web", Number: 1, User: "ann"})
		if b.Status != contracts.BuildStatusCanceled || jobOf(b, "test").Status != contracts.JobStatusCanceled || jobOf(b, "build").Status != contracts.JobStatusSuccess {
			t.Fatalf("canceled %+v", b)
		}
		wantCode(t, e, contracts.UpdateBuild{Repo: "web", Number: 1, Status: contracts.BuildStatusSuccess}, contracts.CodeConflict)
		r := call[contracts.Build](t, e, contracts.RetryBuild{Repo: "web", Number: 1, User: "bob"})
		if r.Number != 2 || r.RetryOf != 1 || r.Commit != commit || r.Params["K"] != "v" {
			t.Fatalf("retry %+v", r)
		}
		r = call[contracts.Build](t, e, contracts.UpdateBuild{Repo: "web", Number: 2, Status: contracts.BuildStatusError, Error: "pipeline.yaml:3: unknown key"})
		if r.Status != contracts.BuildStatusError || r.Error == "" || r.FinishedAt.IsZero() {
			t.Fatalf("errored %+v", r)
		}
		wantCode(t, e, contracts.GetBuild{Repo: "web", Number: 9}, contracts.CodeNotFound)
		wantCode(t, e, contracts.UpdateBuild{Repo: "web", Number: 2, Status: contracts.BuildStatusRunning}, contracts.CodeInvalidArgument)
	})
}

func TestSecretsAndTokens(t *testing.T) {
	forEachDriver(t, func(t *testing.T, e *env) {
		const value = "hunter2-very-secret"
		call[contracts.Repo](t, e, contracts.CreateRepo{Name: "web", URL: "https://x/web.git", WebhookSecret: "hook-secret-value"})
		call[contracts.OK](t, e, contracts.SetSecret{Repo: "web", Name: "DEPLOY_KEY", Value: value})
		call[contracts.OK](t, e, contracts.SetSecret{Repo: "web", Name: "A", Value: "x"})
		wantCode(t, e, contracts.SetSecret{Repo: "nope", Name: "A", Value: "x"}, contracts.CodeNotFound)
		if n := call[contracts.SecretNames](t, e, contracts.ListSecrets{Repo: "web"}); !slices.Equal(n.Names, []string{"A", "DEPLOY_KEY"}) {
			t.Fatalf("names %v", n.Names)
		}
		// No event holds a secret in the clear.
		batch, err := hubclient.Read(ctxT(t), e.client, contracts.ReadEvents{Limit: contracts.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range batch.Events {
			if strings.Contains(string(ev.Payload), value) || strings.Contains(string(ev.Payload), "hook-secret-value") {
				t.Fatalf("event %d carries a secret in the clear: %s", ev.Seq, ev.Payload)
			}
		}
		call[contracts.Build](t, e, contracts.TriggerBuild{Repo: "web", Event: contracts.TriggerManual})
		call[contracts.Build](t, e, contracts.PlanBuild{Repo: "web", Number: 1, Commit: strings.Repeat("0a", 20), Jobs: []contracts.PlannedJob{{ID: "deploy"}}})
		ref := contracts.JobRef{Repo: "web", Build: 1, Job: "deploy"}
		lease := contracts.NewID(time.Now())
		get := contracts.GetJobSecrets{Job: ref, LeaseID: lease, Names: []string{"DEPLOY_KEY"}}
		wantCode(t, e, get, contracts.CodePermissionDenied) // not running yet
		now := time.Now().UTC()
		call[contracts.Build](t, e, contracts.UpdateJob{Job: ref, Status: contracts.JobStatusQueued, Attempt: 1, Time: now})
		call[contracts.Build](t, e, contracts.UpdateJob{Job: ref, Status: contracts.JobStatusRunning, Attempt: 1, RunnerID: "r1", LeaseID: lease, Time: now})
		wantCode(t, e, contracts.GetJobSecrets{Job: ref, LeaseID: contracts.NewID(time.Now()), Names: []string{"DEPLOY_KEY"}}, contracts.CodePermissionDenied)
		if s := call[contracts.JobSecrets](t, e, get); s.Values["DEPLOY_KEY"] != value {
			t.Fatal("job secret does not open to its value")
		}
		wantCode(t, e, contracts.GetJobSecrets{Job: ref, LeaseID: lease, Names: []string{"MISSING"}}, contracts.CodeNotFound)
		one := 1
		call[contracts.Build](t, e, contracts.UpdateJob{Job: ref, Status: contracts.JobStatusFailure, Attempt: 1, ExitCode: &one, Time: now})
		wantCode(t, e, get, contracts.CodePermissionDenied) // over

		hash := contracts.TokenHash("tok-123")
		tok := call[contracts.Token](t, e, contracts.CreateToken{Name: "ci", Scope: contracts.ScopeWrite, Hash: hash})
		if tok.Name != "ci" || tok.Scope != contracts.ScopeWrite {
			t.Fatalf("token %+v", tok)
		}
		wantCode(t, e, contracts.CreateToken{Name: "ci", Scope: contracts.ScopeRead, Hash: contracts.TokenHash("other")}, contracts.CodeConflict)
		if got := call[contracts.Token](t, e, contracts.CheckToken{Hash: hash}); got.Name != "ci" {
			t.Fatalf("check %+v", got)
		}
		wantCode(t, e, contracts.CheckToken{Hash: contracts.TokenHash("wrong")}, contracts.CodeUnauthenticated)
		wantCode(t, e, contracts.CheckToken{Hash: "not-a-hash"}, contracts.CodeInvalidArgument)
	})
}

// populate runs a mix of commands.
func populate(t *testing.T, e *env) {
	for i := range 5 {
		name := fmt.Sprintf("repo%d", i)
		call[contracts.Repo](t, e, contracts.CreateRepo{Name: name, URL: "https://x/" + name + ".git", WebhookSecret: "w"})
		call[contracts.OK](t, e, contracts.SetSecret{Repo: name, Name: "S", Value: "v"})
		for range 3 {
			call[contracts.Build](t, e, contracts.TriggerBuild{Repo: name, Event: contracts.TriggerPush})
		}
		call[contracts.Build](t, e, contracts.PlanBuild{Repo: name, Number: 1, Commit: strings.Repeat("c1", 20), Jobs: []contracts.PlannedJob{{ID: "a"}, {ID: "b", DependsOn: []string{"a"}}}})
		call[contracts.Build](t, e, contracts.CancelBuild{Repo: name, Number: 2})
	}
	call[contracts.OK](t, e, contracts.DeleteRepo{Name: "repo3"})
	call[contracts.Token](t, e, contracts.CreateToken{Name: "t", Scope: contracts.ScopeAdmin, Hash: contracts.TokenHash("t")})
}

func dump(t *testing.T, so store.Options) string {
	t.Helper()
	st, err := store.Open(ctxT(t), so)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.Dump(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The tables are a projection of the log: rebuilding them from it gives
// the same rows, and the module picks up where the rebuild ended.
func TestRebuildYieldsSameRows(t *testing.T) {
	forEachDriver(t, func(t *testing.T, e *env) {
		populate(t, e)
		e.stopDS()
		so := e.opts.StoreOptions(e.host.Dir)
		before := dump(t, so)
		st, err := store.Open(ctxT(t), so)
		if err != nil {
			t.Fatal(err)
		}
		n, err := datastore.Rebuild(ctxT(t), st, func(ctx context.Context, since int64) ([]contracts.Event, error) {
			b, err := hubclient.Read(ctx, e.client, contracts.ReadEvents{Since: since, Limit: 7})
			return b.Events, err
		})
		st.Close()
		if err != nil || n == 0 {
			t.Fatalf("rebuild: %d events, %v", n, err)
		}
		if after := dump(t, so); after != before {
			t.Fatalf("rebuild differs:\n--- before\n%s\n--- after\n%s", before, after)
		}
		e.stopDS = moduletest.Start(t, datastore.New(e.opts), e.host)
		if r := call[contracts.Repo](t, e, contracts.GetRepo{Name: "repo4"}); r.Name != "repo4" {
			t.Fatal(r)
		}
	})
}

// Events stored while the data store was down are applied when it starts,
// before it serves.
func TestCatchUpAtStart(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir, datastore.Options{Driver: store.DriverSQLite})
	call[contracts.Repo](t, e, contracts.CreateRepo{Name: "web", URL: "https://x/web.git"})
	e.stopDS()
	if _, err := hubclient.PublishNew(ctxT(t), e.client, contracts.Subject{Repo: "late"}, contracts.RepoCreated{URL: "https://x/late.git", DefaultBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	e.stopDS = moduletest.Start(t, datastore.New(e.opts), e.host)
	if r := call[contracts.Repo](t, e, contracts.GetRepo{Name: "late"}); r.URL != "https://x/late.git" {
		t.Fatalf("late repo %+v", r)
	}
	// A second data store on the same database is refused.
	err := datastore.New(e.opts).Start(ctxT(t), e.host)
	if !errors.Is(err, datastore.ErrOwned) {
		t.Fatalf("second data store: %v, want ErrOwned", err)
	}
}

// A data store that starts before the hub waits for it, then serves.
func TestStartWaitsForHub(t *testing.T) {
	dir := t.TempDir()
	net := inproc.NewNetwork()
	tr, client := net.Node(), net.Node()
	defer client.Close()
	defer tr.Close()
	host := moduletest.Host{TR: tr, Log: moduletest.Logger(t), Dir: dir}
	ds := datastore.New(datastore.Options{Driver: store.DriverSQLite})
	started := make(chan error, 1)
	go func() { started <- ds.Start(ctxT(t), host) }()
	select {
	case err := <-started:
		t.Fatalf("started without a hub: %v", err)
	case <-time.After(200 * time.Millisecond): // a negative check: it must still be waiting
	}
	hub := eventhub.New(eventhub.Options{OpenLog: func(ctx context.Context, dataDir string) (eventlog.Log, error) {
		return filelog.Open(filepath.Join(dataDir, "events"), filelog.Options{})
	}})
	moduletest.Start(t, hub, host)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	defer ds.Stop(context.Background())
	e := &env{t: t, client: client}
	call[contracts.Repo](t, e, contracts.CreateRepo{Name: "web", URL: "https://x/web.git"})
}

// TestTriggerDedup: triggers with one dedup key make one build, even
// concurrently; other keys and repos are independent.
func TestTriggerDedup(t *testing.T) {
	forEachDriver(t, func(t *testing.T, e *env) {
		call[contracts.Repo](t, e, contracts.CreateRepo{Name: "web", URL: "https://x/web.git"})
		call[contracts.Repo](t, e, contracts.CreateRepo{Name: "api", URL: "https://x/api.git"})
		var wg sync.WaitGroup
		numbers := make([]int64, 20)
		for i := range numbers {
			wg.Go(func() {
				b, err := rpc.Call[contracts.Build](ctxT(t), e.client, contracts.TriggerBuild{Repo: "web", Event: contracts.TriggerWebhook, DedupKey: "delivery-1"})
				if err != nil {
					t.Error(err)
					return
				}
				numbers[i] = b.Number
			})
		}
		wg.Wait()
		for _, n := range numbers {
			if n != 1 {
				t.Fatalf("a repeated delivery made build %d: %v", n, numbers)
			}
		}
		if b := call[contracts.Build](t, e, contracts.TriggerBuild{Repo: "web", Event: contracts.TriggerWebhook, DedupKey: "delivery-2"}); b.Number != 2 {
			t.Fatalf("another delivery: build %d, want 2", b.Number)
		}
		if b := call[contracts.Build](t, e, contracts.TriggerBuild{Repo: "api", Event: contracts.TriggerWebhook, DedupKey: "delivery-1"}); b.Number != 1 {
			t.Fatalf("the same key on another repo: build %d, want 1", b.Number)
		}
		if b := call[contracts.Build](t, e, contracts.TriggerBuild{Repo: "web", Event: contracts.TriggerManual}); b.Number != 3 {
			t.Fatalf("a trigger without a key: build %d, want 3", b.Number)
		}
	})
}
