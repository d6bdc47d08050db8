package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/zeroci/zeroci/contracts"
)

// runSuite runs every storage test on the databases open returns: each
// call gives a fresh, empty database.
func runSuite(t *testing.T, open func(testing.TB) Options) {
	tests := []struct {
		name string
		fn   func(*testing.T, func(testing.TB) Options)
	}{
		{"Repos", testRepos},
		{"RepoDeleted", testRepoDeleted},
		{"BuildTriggered", testBuildTriggered},
		{"BuildStarted", testBuildStarted},
		{"BuildCanceled", testBuildCanceled},
		{"BuildFinished", testBuildFinished},
		{"JobTransitions", testJobTransitions},
		{"JobAttempts", testJobAttempts},
		{"Secrets", testSecrets},
		{"Tokens", testTokens},
		{"InvalidEvents", testInvalidEvents},
		{"ListRepos", testListRepos},
		{"ListBuilds", testListBuilds},
		{"ActiveBuilds", testActiveBuilds},
		{"ExactlyOnce", testExactlyOnce},
		{"Gap", testGap},
		{"ConcurrentApply", testConcurrentApply},
		{"Golden", testGolden},
		{"ResetRebuild", testResetRebuild},
		{"Reopen", testReopen},
		{"HundredBuilds", testHundredBuilds},
		{"Migrate", testMigrate},
		{"ConcurrentOpen", testConcurrentOpen},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

func testRepos(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	if _, err := f.st.GetRepo(context.Background(), "app"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetRepo of a missing repo = %v, want ErrNotFound", err)
	}
	created := f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app.git", DefaultBranch: "main"})
	want := RepoRecord{Repo: contracts.Repo{
		Name: "app", URL: "https://git.example/app.git", DefaultBranch: "main", CreatedAt: created,
	}}
	if got := f.repo("app"); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetRepo = %+v, want %+v", got, want)
	}
	if created.Nanosecond()%1000 != 0 || created.Location() != time.UTC {
		t.Fatalf("created_at %v is not UTC truncated to microseconds", created)
	}

	// A second repo.created updates the fields but keeps created_at.
	f.do(repoSubject("app"), contracts.RepoCreated{
		URL: "https://git.example/app2.git", DefaultBranch: "trunk", PollSeconds: 300, WebhookSecret: sealed("hook"),
	})
	want.URL, want.DefaultBranch, want.PollSeconds, want.HasWebhookSecret = "https://git.example/app2.git", "trunk", 300, true
	want.WebhookSecret = sealed("hook")
	if got := f.repo("app"); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetRepo after update = %+v, want %+v", got, want)
	}
	// ...and one without a webhook secret removes it.
	f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app2.git", DefaultBranch: "trunk"})
	want.PollSeconds, want.HasWebhookSecret, want.WebhookSecret = 0, false, ""
	if got := f.repo("app"); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetRepo after removing the secret = %+v, want %+v", got, want)
	}
}

// setupBuild creates repo with build n running jobs a, b (after a) and
// deploy (manual, after b).
func setupBuild(f *fixture, repo string, n int64) {
	f.t.Helper()
	if _, err := f.st.GetRepo(context.Background(), repo); errors.Is(err, ErrNotFound) {
		f.do(repoSubject(repo), contracts.RepoCreated{URL: "https://git.example/" + repo, DefaultBranch: "main"})
	}
	f.do(buildSubject(repo, n), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerManual, User: "alice"})
	f.do(buildSubject(repo, n), contracts.BuildStarted{Commit: commit('a'), Jobs: []contracts.PlannedJob{
		{ID: "a"}, {ID: "b", DependsOn: []string{"a"}}, {ID: "deploy", DependsOn: []string{"b"}, Manual: true},
	}})
}

func testRepoDeleted(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	setupBuild(f, "gone", 1)
	setupBuild(f, "kept", 1)
	for _, r := range []string{"gone", "kept"} {
		f.do(repoSubject(r), contracts.SecretSet{Name: "TOKEN", Value: sealed("v")})
	}
	f.do(repoSubject("gone"), contracts.RepoDeleted{})
	ctx := context.Background()
	if _, err := f.st.GetRepo(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRepo of a deleted repo = %v, want ErrNotFound", err)
	}
	if _, err := f.st.GetBuild(ctx, "gone", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBuild of a deleted repo = %v, want ErrNotFound", err)
	}
	if _, err := f.st.GetJob(ctx, "gone", 1, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetJob of a deleted repo = %v, want ErrNotFound", err)
	}
	if _, err := f.st.SecretNames(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SecretNames of a deleted repo = %v, want ErrNotFound", err)
	}
	if d := f.dump(); strings.Contains(d, `"gone"`) {
		t.Errorf("rows of the deleted repo remain:\n%s", d)
	}
	if b := f.build("kept", 1); len(b.Jobs) != 3 {
		t.Errorf("the other repo's build lost jobs: %+v", b)
	}
	if names, err := f.st.SecretNames(ctx, "kept"); err != nil || !slices.Equal(names, []string{"TOKEN"}) {
		t.Errorf("the other repo's secrets = %q, %v", names, err)
	}
	f.skip(repoSubject("gone"), contracts.RepoDeleted{}, "no such repo")
	f.skip(buildSubject("gone", 2), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush}, "no such repo")

	// A repo created again starts afresh.
	f.do(repoSubject("gone"), contracts.RepoCreated{URL: "https://git.example/gone", DefaultBranch: "main"})
	if r := f.repo("gone"); r.LastBuild != 0 {
		t.Errorf("recreated repo's last build = %d, want 0", r.LastBuild)
	}
}

func testBuildTriggered(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app", DefaultBranch: "main"})
	created := f.do(buildSubject("app", 1), contracts.BuildTriggered{
		Ref: "main", Commit: "abc1234", Params: map[string]string{"GOOS": "linux", "V": "1"},
		Event: contracts.TriggerWebhook, User: "octocat",
	})
	want := contracts.Build{
		Repo: "app", Number: 1, Status: contracts.BuildStatusQueued, Ref: "main", Commit: "abc1234",
		Params: map[string]string{"GOOS": "linux", "V": "1"}, Event: contracts.TriggerWebhook, User: "octocat",
		CreatedAt: created,
	}
	// An abbreviated commit does not validate as a Build's (full) commit,
	// so compare without Validate here.
	got, err := f.st.GetBuild(context.Background(), "app", 1)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetBuild = %+v, %v\nwant %+v", got, err, want)
	}
	if r := f.repo("app"); r.LastBuild != 1 {
		t.Fatalf("last build = %d, want 1", r.LastBuild)
	}

	// last_build is the highest number, whatever the order.
	f.do(buildSubject("app", 3), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush})
	f.do(buildSubject("app", 2), contracts.BuildTriggered{Ref: "dev", Event: contracts.TriggerPush, RetryOf: 1})
	if r := f.repo("app"); r.LastBuild != 3 {
		t.Fatalf("last build = %d, want 3", r.LastBuild)
	}
	if b := f.build("app", 2); b.RetryOf != 1 || b.Params != nil || b.Ref != "dev" {
		t.Fatalf("build 2 = %+v", b)
	}
	// A retry_of that is not an earlier build is dropped, the build kept.
	f.do(buildSubject("app", 4), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerManual, RetryOf: 9})
	if b := f.build("app", 4); b.RetryOf != 0 {
		t.Fatalf("build 4 retry_of = %d, want 0", b.RetryOf)
	}

	f.skip(buildSubject("app", 1), contracts.BuildTriggered{Ref: "other", Event: contracts.TriggerPush}, "build 1 exists")
	f.skip(buildSubject("nope", 1), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush}, "no such repo")
	f.noop(buildSubject("app", 1), contracts.BuildQueued{})
	f.noop(buildSubject("nope", 1), contracts.BuildQueued{})
}

func testBuildStarted(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app", DefaultBranch: "main"})
	created := f.do(buildSubject("app", 1), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush})
	started := f.do(buildSubject("app", 1), contracts.BuildStarted{Commit: commit('c'), Jobs: []contracts.PlannedJob{
		{ID: "test"}, {ID: "build", DependsOn: []string{"test"}}, {ID: "lint"},
		{ID: "deploy", DependsOn: []string{"build", "lint"}, Manual: true},
	}})
	want := contracts.Build{
		Repo: "app", Number: 1, Status: contracts.BuildStatusRunning, Ref: "main", Commit: commit('c'),
		Event: contracts.TriggerPush, CreatedAt: created, StartedAt: started,
		Jobs: []contracts.Job{
			{ID: "test", Status: contracts.JobStatusPending},
			{ID: "build", Status: contracts.JobStatusPending, DependsOn: []string{"test"}, Reason: "waiting for test"},
			{ID: "lint", Status: contracts.JobStatusPending},
			{ID: "deploy", Status: contracts.JobStatusBlocked, DependsOn: []string{"build", "lint"}, Manual: true,
				Reason: "waiting for approval"},
		},
	}
	if got := f.build("app", 1); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetBuild = %+v\nwant %+v", got, want)
	}
	wantJob := JobRecord{Job: want.Jobs[3], Repo: "app", Build: 1, BuildStatus: contracts.BuildStatusRunning}
	if got := f.job("app", 1, "deploy"); !reflect.DeepEqual(got, wantJob) {
		t.Fatalf("GetJob = %+v\nwant %+v", got, wantJob)
	}
	f.skip(buildSubject("app", 1), contracts.BuildStarted{Commit: commit('d'), Jobs: []contracts.PlannedJob{{ID: "x"}}},
		"build is running, not queued")
	f.skip(buildSubject("app", 2), contracts.BuildStarted{Commit: commit('d'), Jobs: []contracts.PlannedJob{{ID: "x"}}},
		"no such build")
	f.noop(jobSubject("app", 1, "test"), contracts.LogClosed{Lines: 1, Bytes: 2, BlobKey: "logs/app/1/test"})

	// A build that finished while queued (e.g. an invalid pipeline) does
	// not start.
	f.do(buildSubject("app", 2), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush})
	f.do(buildSubject("app", 2), contracts.BuildFinished{Status: contracts.BuildStatusError, Error: "pipeline.yaml:1: bad"})
	f.skip(buildSubject("app", 2), contracts.BuildStarted{Commit: commit('d'), Jobs: []contracts.PlannedJob{{ID: "x"}}},
		"build is error")
	if _, err := f.st.GetJob(context.Background(), "app", 2, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetJob of a job never planned = %v, want ErrNotFound", err)
	}
}

func testBuildCanceled(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	setupBuild(f, "app", 1)
	// a running, b queued, deploy blocked; build 2: all pending.
	f.do(jobSubject("app", 1, "a"), contracts.JobQueued{Attempt: 1})
	f.do(jobSubject("app", 1, "a"), contracts.JobStarted{RunnerID: "r1", Attempt: 1, LeaseID: contracts.NewID(t0)})
	f.do(jobSubject("app", 1, "b"), contracts.JobQueued{Attempt: 1})
	canceled := f.do(buildSubject("app", 1), contracts.BuildCanceled{User: "bob"})

	b := f.build("app", 1)
	if b.Status != contracts.BuildStatusRunning || !b.FinishedAt.IsZero() {
		t.Fatalf("a canceled build stays running until build.finished: %+v", b)
	}
	if j := b.Jobs[0]; j.Status != contracts.JobStatusRunning || !j.FinishedAt.IsZero() {
		t.Errorf("running job a = %+v, want still running", j)
	}
	for _, j := range b.Jobs[1:] {
		if j.Status != contracts.JobStatusCanceled || !j.FinishedAt.Equal(canceled) || j.Reason != "canceled by bob" {
			t.Errorf("job %s = %+v, want canceled by bob at %v", j.ID, j, canceled)
		}
	}
	if j := f.job("app", 1, "a"); !j.CancelRequested || j.LeaseID.IsZero() {
		t.Errorf("GetJob(a) = %+v, want cancel requested and its lease kept", j)
	}

	setupBuild(f, "app", 2)
	f.do(buildSubject("app", 2), contracts.BuildCanceled{})
	for _, j := range f.build("app", 2).Jobs {
		if j.Status != contracts.JobStatusCanceled || j.Reason != "canceled" {
			t.Errorf("job %s = %+v, want canceled", j.ID, j)
		}
	}
	// A queued build (no jobs yet) is marked.
	f.do(buildSubject("app", 3), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush})
	f.do(buildSubject("app", 3), contracts.BuildCanceled{})
	if d := f.dump(); !strings.Contains(d, `builds repo="app" number=3 status="queued"`) ||
		!strings.Contains(d[strings.Index(d, `number=3 status="queued"`):], "cancel_requested=true") {
		t.Errorf("queued build not marked canceled:\n%s", d)
	}

	f.do(buildSubject("app", 2), contracts.BuildFinished{Status: contracts.BuildStatusCanceled})
	f.skip(buildSubject("app", 2), contracts.BuildCanceled{User: "bob"}, "build is canceled already")
	f.skip(buildSubject("app", 9), contracts.BuildCanceled{User: "bob"}, "no such build")
}

func testBuildFinished(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	setupBuild(f, "app", 1)
	f.do(jobSubject("app", 1, "a"), contracts.JobQueued{Attempt: 1})
	f.do(jobSubject("app", 1, "a"), contracts.JobStarted{RunnerID: "r1", Attempt: 1, LeaseID: contracts.NewID(t0)})
	f.do(jobSubject("app", 1, "a"), contracts.JobFinished{Status: contracts.JobStatusSuccess, ExitCode: exitCode(0), Attempt: 1})
	f.do(jobSubject("app", 1, "b"), contracts.JobQueued{Attempt: 1})
	f.do(jobSubject("app", 1, "b"), contracts.JobStarted{RunnerID: "r2", Attempt: 1, LeaseID: contracts.NewID(t0)})
	aBefore := f.build("app", 1).Jobs[0]
	finished := f.do(buildSubject("app", 1), contracts.BuildFinished{Status: contracts.BuildStatusFailure, Error: "runner lost"})

	b := f.build("app", 1)
	if b.Status != contracts.BuildStatusFailure || b.Error != "runner lost" || !b.FinishedAt.Equal(finished) {
		t.Fatalf("build = %+v, want failure at %v", b, finished)
	}
	if !reflect.DeepEqual(b.Jobs[0], aBefore) {
		t.Errorf("final job a changed: %+v, was %+v", b.Jobs[0], aBefore)
	}
	for _, j := range b.Jobs[1:] {
		if j.Status != contracts.JobStatusCanceled || j.Reason != "build finished" || !j.FinishedAt.Equal(finished) {
			t.Errorf("job %s = %+v, want canceled (build finished)", j.ID, j)
		}
	}
	if j := f.job("app", 1, "b"); !j.LeaseID.IsZero() || j.BuildStatus != contracts.BuildStatusFailure || j.StartedAt.IsZero() {
		t.Errorf("GetJob(b) = %+v, want its start kept, no lease, build failure", j)
	}
	f.skip(buildSubject("app", 1), contracts.BuildFinished{Status: contracts.BuildStatusSuccess}, "build is failure already")
	f.skip(buildSubject("app", 2), contracts.BuildFinished{Status: contracts.BuildStatusSuccess}, "no such build")

	// Events come from several clocks: a finish stamped before the start
	// is stored as the start, so the build still validates.
	setupBuild(f, "app", 2)
	bStart := f.build("app", 2).StartedAt
	f.do(jobSubject("app", 2, "a"), contracts.JobQueued{Attempt: 1})
	jStart := f.do(jobSubject("app", 2, "a"), contracts.JobStarted{RunnerID: "r1", Attempt: 1})
	early := f.ev(buildSubject("app", 2), contracts.BuildFinished{Status: contracts.BuildStatusSuccess})
	early.Time = t0.Add(-time.Hour)
	f.apply(early)
	b = f.build("app", 2)
	if !b.FinishedAt.Equal(bStart) || !b.Jobs[0].FinishedAt.Equal(jStart) || !b.Jobs[1].FinishedAt.Equal(early.Time.Truncate(time.Microsecond)) {
		t.Errorf("early finish: build %v (start %v), job a %v (start %v), job b %v", b.FinishedAt, bStart, b.Jobs[0].FinishedAt, jStart, b.Jobs[1].FinishedAt)
	}
}

func testJobTransitions(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	setupBuild(f, "app", 1)
	js := func(id string) contracts.Subject { return jobSubject("app", 1, id) }
	jobOf := func(id string) contracts.Job { return f.job("app", 1, id).Job }

	// job.pending sets the reason of a pending or queued job only.
	f.do(js("b"), contracts.JobPending{Reason: "waiting for a"})
	if j := jobOf("b"); j.Status != contracts.JobStatusPending || j.Reason != "waiting for a" {
		t.Fatalf("b = %+v", j)
	}
	f.skip(js("deploy"), contracts.JobPending{Reason: "x"}, "job is blocked, not pending or queued")

	// job.queued
	f.do(js("a"), contracts.JobQueued{Attempt: 1})
	if j := jobOf("a"); j.Status != contracts.JobStatusQueued || j.Attempt != 1 || j.Reason != "" {
		t.Fatalf("a = %+v", j)
	}
	f.do(js("a"), contracts.JobPending{Reason: "no runner with labels os=linux"})
	if j := jobOf("a"); j.Status != contracts.JobStatusQueued || j.Reason != "no runner with labels os=linux" {
		t.Fatalf("a = %+v", j)
	}

	// job.started
	lease := mustID(t, "0123456789abcdef0123456789abcdef")
	started := f.do(js("a"), contracts.JobStarted{RunnerID: "runner-1", Attempt: 1, LeaseID: lease})
	wantA := JobRecord{
		Job:  contracts.Job{ID: "a", Status: contracts.JobStatusRunning, Attempt: 1, RunnerID: "runner-1", StartedAt: started},
		Repo: "app", Build: 1, BuildStatus: contracts.BuildStatusRunning, LeaseID: lease,
	}
	if got := f.job("app", 1, "a"); !reflect.DeepEqual(got, wantA) {
		t.Fatalf("GetJob(a) = %+v\nwant %+v", got, wantA)
	}
	f.skip(js("a"), contracts.JobPending{Reason: "x"}, "job is running")

	// job.finished
	finished := f.do(js("a"), contracts.JobFinished{Status: contracts.JobStatusFailure, ExitCode: exitCode(2), Reason: "exit 2", Attempt: 1, DurationMs: 5})
	wantA.Status, wantA.ExitCode, wantA.Reason, wantA.FinishedAt, wantA.LeaseID = contracts.JobStatusFailure, exitCode(2), "exit 2", finished, contracts.ID{}
	if got := f.job("app", 1, "a"); !reflect.DeepEqual(got, wantA) {
		t.Fatalf("GetJob(a) = %+v\nwant %+v", got, wantA)
	}
	// Nothing moves a final job.
	for _, p := range []contracts.Message{
		contracts.JobPending{Reason: "x"}, contracts.JobQueued{Attempt: 2}, contracts.JobBlocked{Reason: "x"},
		contracts.JobApproved{}, contracts.JobStarted{RunnerID: "r", Attempt: 2},
		contracts.JobFinished{Status: contracts.JobStatusSuccess, Attempt: 2}, contracts.JobSkipped{Reason: "x"},
	} {
		f.skip(js("a"), p, "job is failure already")
	}

	// job.skipped
	skipped := f.do(js("b"), contracts.JobSkipped{Reason: "dependency a failed"})
	if j := jobOf("b"); j.Status != contracts.JobStatusSkipped || j.Reason != "dependency a failed" || !j.FinishedAt.Equal(skipped) {
		t.Fatalf("b = %+v", j)
	}

	// job.approved (blocked → pending), job.blocked
	f.do(js("deploy"), contracts.JobApproved{})
	if j := jobOf("deploy"); j.Status != contracts.JobStatusPending || j.Reason != "approved" {
		t.Fatalf("deploy = %+v", j)
	}
	f.skip(js("deploy"), contracts.JobApproved{User: "carol"}, "job is pending, not blocked")
	f.do(js("deploy"), contracts.JobBlocked{Reason: "needs a second approval"})
	if j := jobOf("deploy"); j.Status != contracts.JobStatusBlocked || j.Reason != "needs a second approval" {
		t.Fatalf("deploy = %+v", j)
	}
	f.do(js("deploy"), contracts.JobApproved{User: "carol"})
	if j := jobOf("deploy"); j.Status != contracts.JobStatusPending || j.Reason != "approved by carol" {
		t.Fatalf("deploy = %+v", j)
	}
	// A job that never reached a runner can end (attempt 0).
	f.do(js("deploy"), contracts.JobFinished{Status: contracts.JobStatusError, Reason: "no runner can run it"})
	if j := jobOf("deploy"); j.Status != contracts.JobStatusError || j.Attempt != 0 || j.ExitCode != nil || j.FinishedAt.IsZero() {
		t.Fatalf("deploy = %+v", j)
	}
	f.build("app", 1) // validates

	for _, p := range []contracts.Message{
		contracts.JobPending{Reason: "x"}, contracts.JobQueued{Attempt: 1}, contracts.JobBlocked{Reason: "x"},
		contracts.JobApproved{}, contracts.JobStarted{RunnerID: "r", Attempt: 1},
		contracts.JobFinished{Status: contracts.JobStatusSuccess, Attempt: 1}, contracts.JobSkipped{Reason: "x"},
	} {
		f.skip(js("nope"), p, "no such job")
		f.skip(jobSubject("app", 7, "a"), p, "no such job")
	}
}

func testJobAttempts(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	setupBuild(f, "app", 1)
	js := func(id string) contracts.Subject { return jobSubject("app", 1, id) }
	lease1 := mustID(t, "0123456789abcdef0123456789abcdef")
	lease2 := mustID(t, "fedcba9876543210fedcba9876543210")

	f.do(js("a"), contracts.JobQueued{Attempt: 1})
	f.do(js("a"), contracts.JobStarted{RunnerID: "r1", Attempt: 1, LeaseID: lease1})
	// The runner is lost: attempt 2 is queued, the first attempt's runner,
	// lease and start are cleared.
	f.do(js("a"), contracts.JobQueued{Attempt: 2})
	want := JobRecord{Job: contracts.Job{ID: "a", Status: contracts.JobStatusQueued, Attempt: 2},
		Repo: "app", Build: 1, BuildStatus: contracts.BuildStatusRunning}
	if got := f.job("app", 1, "a"); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetJob(a) = %+v\nwant %+v", got, want)
	}
	// Late news of attempt 1 changes nothing.
	f.skip(js("a"), contracts.JobStarted{RunnerID: "r1", Attempt: 1, LeaseID: lease1}, "attempt 1 started after attempt 2")
	started := f.do(js("a"), contracts.JobStarted{RunnerID: "r2", Attempt: 2, LeaseID: lease2})
	f.skip(js("a"), contracts.JobFinished{Status: contracts.JobStatusFailure, ExitCode: exitCode(1), Attempt: 1},
		"late result of attempt 1: the job is at attempt 2")
	finished := f.do(js("a"), contracts.JobFinished{Status: contracts.JobStatusSuccess, ExitCode: exitCode(0), Attempt: 2})
	want.Job = contracts.Job{ID: "a", Status: contracts.JobStatusSuccess, Attempt: 2, RunnerID: "r2",
		StartedAt: started, FinishedAt: finished, ExitCode: exitCode(0)}
	if got := f.job("app", 1, "a"); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetJob(a) = %+v\nwant %+v", got, want)
	}

	// A result of a later attempt than the job has seen records it.
	f.do(js("b"), contracts.JobQueued{Attempt: 1})
	f.do(js("b"), contracts.JobFinished{Status: contracts.JobStatusError, Attempt: 3, Reason: "lease expired"})
	if j := f.job("app", 1, "b"); j.Status != contracts.JobStatusError || j.Attempt != 3 {
		t.Fatalf("GetJob(b) = %+v", j)
	}
	// A blocked job can be queued (job.queued applies to any job not final).
	f.do(js("deploy"), contracts.JobQueued{Attempt: 1})
	if j := f.job("app", 1, "deploy"); j.Status != contracts.JobStatusQueued || j.Reason != "" {
		t.Fatalf("GetJob(deploy) = %+v", j)
	}
	f.build("app", 1)
}

func testSecrets(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app", DefaultBranch: "main"})
	if names, err := f.st.SecretNames(ctx, "app"); err != nil || names == nil || len(names) != 0 {
		t.Fatalf("SecretNames of a repo without secrets = %#v, %v; want empty", names, err)
	}
	for _, n := range []string{"b", "B_X", "a", "Z", "_x"} {
		f.do(repoSubject("app"), contracts.SecretSet{Name: n, Value: sealed("v-" + n)})
	}
	names, err := f.st.SecretNames(ctx, "app")
	if want := []string{"B_X", "Z", "_x", "a", "b"}; err != nil || !slices.Equal(names, want) {
		t.Fatalf("SecretNames = %q, %v; want %q (byte order)", names, err, want)
	}
	updated := f.do(repoSubject("app"), contracts.SecretSet{Name: "a", Value: sealed("v-a2")})
	got, err := f.st.Secrets(ctx, "app", []string{"a", "Z", "MISSING"})
	want := map[string]contracts.Sealed{"a": sealed("v-a2"), "Z": sealed("v-Z")}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Secrets = %v, %v; want %v", got, err, want)
	}
	if d := f.dump(); !strings.Contains(d, fmt.Sprintf(`name="a" value=%q updated_at=%s`, sealed("v-a2"), updated.Format(time.RFC3339Nano))) {
		t.Fatalf("secret a not updated at %v:\n%s", updated, d)
	}
	if got, err := f.st.Secrets(ctx, "app", nil); err != nil || len(got) != 0 {
		t.Fatalf("Secrets(no names) = %v, %v", got, err)
	}
	if got, err := f.st.Secrets(ctx, "nope", []string{"a"}); err != nil || len(got) != 0 {
		t.Fatalf("Secrets of an unknown repo = %v, %v; want none", got, err)
	}
	if _, err := f.st.SecretNames(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SecretNames of an unknown repo = %v, want ErrNotFound", err)
	}
	f.skip(repoSubject("nope"), contracts.SecretSet{Name: "a", Value: sealed("x")}, "no such repo")
	if err := (contracts.SecretNames{Repo: "app", Names: names}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func testTokens(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	h1, h2 := contracts.TokenHash("token-1"), contracts.TokenHash("token-2")
	created := f.do(contracts.Subject{}, contracts.TokenCreated{Name: "ci", Scope: contracts.ScopeWrite, Hash: h1})
	tok, err := f.st.TokenByHash(ctx, h1)
	if want := (contracts.Token{Name: "ci", Scope: contracts.ScopeWrite, CreatedAt: created}); err != nil || tok != want {
		t.Fatalf("TokenByHash = %+v, %v; want %+v", tok, err, want)
	}
	if err := tok.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.TokenByHash(ctx, h2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TokenByHash(unknown) = %v, want ErrNotFound", err)
	}
	for name, want := range map[string]bool{"ci": true, "cd": false} {
		if ok, err := f.st.TokenExists(ctx, name); err != nil || ok != want {
			t.Fatalf("TokenExists(%s) = %v, %v; want %v", name, ok, err, want)
		}
	}
	f.skip(contracts.Subject{}, contracts.TokenCreated{Name: "ci", Scope: contracts.ScopeAdmin, Hash: h2}, "name or hash exists")
	f.skip(contracts.Subject{}, contracts.TokenCreated{Name: "cd", Scope: contracts.ScopeAdmin, Hash: h1}, "name or hash exists")
}

func testInvalidEvents(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	setupBuild(f, "app", 1)
	unknown := f.ev(repoSubject("app"), contracts.RepoDeleted{})
	unknown.Type = "repo.renamed"
	f.skipEvent(unknown, "invalid event")

	badPayload := f.ev(buildSubject("app", 1), contracts.BuildFinished{Status: contracts.BuildStatusSuccess})
	badPayload.Payload = []byte(`{"status":"running"}`)
	f.skipEvent(badPayload, "invalid event")

	future := f.ev(buildSubject("app", 1), contracts.BuildFinished{Status: contracts.BuildStatusSuccess})
	future.Version = 99
	f.skipEvent(future, "invalid event")

	noJob := f.ev(jobSubject("app", 1, "a"), contracts.JobQueued{Attempt: 1})
	noJob.Job = ""
	f.skipEvent(noJob, "invalid event")

	noTime := f.ev(repoSubject("other"), contracts.RepoCreated{URL: "https://git.example/o", DefaultBranch: "main"})
	noTime.Time = time.Time{}
	f.skipEvent(noTime, "invalid event")
}

func testListRepos(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	if repos, next, err := f.st.ListRepos(ctx, "", 0); err != nil || len(repos) != 0 || next != "" {
		t.Fatalf("ListRepos of none = %v, %q, %v", repos, next, err)
	}
	for _, n := range []string{"b", "ab", "a_b", "a0", "a.b", "a-b", "a"} {
		f.do(repoSubject(n), contracts.RepoCreated{URL: "https://git.example/" + n, DefaultBranch: "main"})
	}
	names := func(repos []contracts.Repo) []string {
		var s []string
		for _, r := range repos {
			s = append(s, r.Name)
		}
		return s
	}
	pages := []struct {
		after string
		limit int
		want  []string
		next  string
	}{
		{"", 3, []string{"a", "a-b", "a.b"}, "a.b"},
		{"a.b", 3, []string{"a0", "a_b", "ab"}, "ab"},
		{"ab", 3, []string{"b"}, ""},
		{"", 0, []string{"a", "a-b", "a.b", "a0", "a_b", "ab", "b"}, ""},
		{"", 7, []string{"a", "a-b", "a.b", "a0", "a_b", "ab", "b"}, ""},
		{"a0", 1, []string{"a_b"}, "a_b"},
		{"b", 5, nil, ""},
	}
	for _, p := range pages {
		repos, next, err := f.st.ListRepos(ctx, p.after, p.limit)
		if err != nil || !slices.Equal(names(repos), p.want) || next != p.next {
			t.Errorf("ListRepos(%q, %d) = %q, %q, %v; want %q, %q", p.after, p.limit, names(repos), next, err, p.want, p.next)
		}
		if err := (contracts.RepoList{Repos: repos, Next: next}).Validate(); err != nil {
			t.Errorf("ListRepos(%q, %d): %v", p.after, p.limit, err)
		}
	}
	for _, limit := range []int{-1, contracts.MaxListLimit + 1} {
		if _, _, err := f.st.ListRepos(ctx, "", limit); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("ListRepos(limit %d) = %v, want a limit error", limit, err)
		}
	}
}

func testListBuilds(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app", DefaultBranch: "main"})
	f.do(repoSubject("empty"), contracts.RepoCreated{URL: "https://git.example/empty", DefaultBranch: "main"})
	for n := int64(1); n <= 10; n++ {
		f.do(buildSubject("app", n), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush})
	}
	for n, s := range map[int64]contracts.BuildStatus{2: "success", 4: "failure", 6: "success"} {
		f.do(buildSubject("app", n), contracts.BuildFinished{Status: s})
	}
	f.do(buildSubject("app", 8), contracts.BuildStarted{Commit: commit('8'), Jobs: []contracts.PlannedJob{{ID: "j"}}})

	tests := []struct {
		status contracts.BuildStatus
		before int64
		limit  int
		want   []int64
	}{
		{"", 0, 0, []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"", 0, 3, []int64{10, 9, 8}},
		{"", 8, 3, []int64{7, 6, 5}},
		{"", 3, 10, []int64{2, 1}},
		{"", 1, 10, nil},
		{"success", 0, 0, []int64{6, 2}},
		{"success", 6, 0, []int64{2}},
		{"queued", 0, 4, []int64{10, 9, 7, 5}},
		{"running", 0, 0, []int64{8}},
		{"canceled", 0, 0, nil},
	}
	for _, tt := range tests {
		builds, err := f.st.ListBuilds(ctx, "app", tt.status, tt.before, tt.limit)
		var got []int64
		for _, b := range builds {
			got = append(got, b.Number)
			if b.Jobs != nil {
				t.Errorf("ListBuilds returned jobs of build %d", b.Number)
			}
			if tt.status != "" && b.Status != tt.status {
				t.Errorf("ListBuilds(%s) returned build %d in %s", tt.status, b.Number, b.Status)
			}
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ListBuilds(app, %q, %d, %d) = %v, %v; want %v", tt.status, tt.before, tt.limit, got, err, tt.want)
		}
		if err := (contracts.BuildList{Builds: builds}).Validate(); err != nil {
			t.Errorf("ListBuilds(app, %q, %d, %d): %v", tt.status, tt.before, tt.limit, err)
		}
	}
	if builds, err := f.st.ListBuilds(ctx, "empty", "", 0, 0); err != nil || len(builds) != 0 {
		t.Errorf("ListBuilds of a repo without builds = %v, %v", builds, err)
	}
	if _, err := f.st.ListBuilds(ctx, "nope", "", 0, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListBuilds of an unknown repo = %v, want ErrNotFound", err)
	}
	for _, bad := range []struct {
		status contracts.BuildStatus
		before int64
		limit  int
		want   string
	}{
		{"bogus", 0, 0, "unknown status"},
		{"", -1, 0, "negative"},
		{"", 0, contracts.MaxListLimit + 1, "limit"},
	} {
		if _, err := f.st.ListBuilds(ctx, "app", bad.status, bad.before, bad.limit); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ListBuilds(%q, %d, %d) = %v, want an error with %q", bad.status, bad.before, bad.limit, err, bad.want)
		}
	}
	if _, err := f.st.GetBuild(ctx, "app", 11); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBuild of a missing build = %v, want ErrNotFound", err)
	}
}

// scenario returns events that exercise every table and most rules,
// including skipped ones; the Golden test pins what they project to.
func scenario(f *fixture) []contracts.Event {
	lease1 := mustID(f.t, "0123456789abcdef0123456789abcdef")
	lease2 := mustID(f.t, "fedcba9876543210fedcba9876543210")
	app1 := func(job string) contracts.Subject { return jobSubject("app", 1, job) }
	lib2 := func(job string) contracts.Subject { return jobSubject("lib", 2, job) }
	evs := []contracts.Event{
		f.ev(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app.git", DefaultBranch: "main",
			PollSeconds: 60, WebhookSecret: sealed("hook")}),
		f.ev(repoSubject("lib"), contracts.RepoCreated{URL: "https://git.example/lib.git", DefaultBranch: "trunk"}),
		f.ev(repoSubject("old"), contracts.RepoCreated{URL: "https://git.example/old.git", DefaultBranch: "main"}),
		f.ev(repoSubject("app"), contracts.SecretSet{Name: "TOKEN", Value: sealed("t1")}),
		f.ev(repoSubject("app"), contracts.SecretSet{Name: "KEY", Value: sealed("k")}),
		f.ev(repoSubject("app"), contracts.SecretSet{Name: "TOKEN", Value: sealed("t2")}),
		f.ev(contracts.Subject{}, contracts.TokenCreated{Name: "ci", Scope: contracts.ScopeWrite, Hash: contracts.TokenHash("s1")}),
		f.ev(contracts.Subject{}, contracts.TokenCreated{Name: "admin", Scope: contracts.ScopeAdmin, Hash: contracts.TokenHash("s2")}),
		f.ev(contracts.Subject{}, contracts.TokenCreated{Name: "ci", Scope: contracts.ScopeRead, Hash: contracts.TokenHash("s3")}), // skipped

		f.ev(buildSubject("app", 1), contracts.BuildTriggered{Ref: "main", Params: map[string]string{"DEPLOY": "yes", "A": "1"},
			Event: contracts.TriggerManual, User: "alice"}),
		f.ev(buildSubject("app", 1), contracts.BuildQueued{}),
		f.ev(buildSubject("app", 1), contracts.BuildStarted{Commit: commit('a'), Jobs: []contracts.PlannedJob{
			{ID: "test"}, {ID: "build", DependsOn: []string{"test"}}, {ID: "deploy", DependsOn: []string{"build"}, Manual: true},
		}}),
		f.ev(app1("build"), contracts.JobPending{Reason: "waiting for test"}),
		f.ev(app1("test"), contracts.JobQueued{Attempt: 1}),
		f.ev(app1("test"), contracts.JobStarted{RunnerID: "r1", Attempt: 1, LeaseID: lease1}),
		f.ev(app1("test"), contracts.JobQueued{Attempt: 2}),
		f.ev(app1("test"), contracts.JobStarted{RunnerID: "r2", Attempt: 2, LeaseID: lease2}),
		f.ev(app1("test"), contracts.JobFinished{Status: contracts.JobStatusFailure, Attempt: 1}), // late: skipped
		f.ev(app1("test"), contracts.JobFinished{Status: contracts.JobStatusSuccess, ExitCode: exitCode(0), Attempt: 2, DurationMs: 900}),
		f.ev(app1("test"), contracts.LogClosed{Lines: 10, Bytes: 300, BlobKey: "logs/app/1/test"}),
		f.ev(app1("build"), contracts.JobQueued{Attempt: 1}),
		f.ev(app1("build"), contracts.JobStarted{RunnerID: "r1", Attempt: 1, LeaseID: lease1}),
		f.ev(app1("build"), contracts.JobFinished{Status: contracts.JobStatusFailure, ExitCode: exitCode(1), Reason: "exit status 1", Attempt: 1}),
		f.ev(app1("deploy"), contracts.JobSkipped{Reason: "dependency build failed"}),
		f.ev(buildSubject("app", 1), contracts.BuildFinished{Status: contracts.BuildStatusFailure}),

		f.ev(buildSubject("app", 2), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerManual, User: "bob", RetryOf: 1}),
		f.ev(buildSubject("app", 2), contracts.BuildStarted{Commit: commit('a'), Jobs: []contracts.PlannedJob{{ID: "test"}}}),
		f.ev(buildSubject("app", 2), contracts.BuildCanceled{User: "bob"}),
		f.ev(buildSubject("app", 2), contracts.BuildFinished{Status: contracts.BuildStatusCanceled}),

		f.ev(buildSubject("lib", 1), contracts.BuildTriggered{Ref: "trunk", Commit: "abc1234", Event: contracts.TriggerPush}),
		f.ev(buildSubject("lib", 1), contracts.BuildFinished{Status: contracts.BuildStatusError, Error: "pipeline.yaml:3: unknown key \"scirpt\""}),
		f.ev(buildSubject("lib", 2), contracts.BuildTriggered{Ref: "trunk", Event: contracts.TriggerWebhook, User: "octocat", DedupKey: "delivery-72d4"}),
		f.ev(buildSubject("lib", 2), contracts.BuildStarted{Commit: commit('b'), Jobs: []contracts.PlannedJob{
			{ID: "a"}, {ID: "b"}, {ID: "gate", DependsOn: []string{"a", "b"}, Manual: true},
		}}),
		f.ev(lib2("a"), contracts.JobQueued{Attempt: 1}),
		f.ev(lib2("a"), contracts.JobStarted{RunnerID: "r3", Attempt: 1, LeaseID: lease1}),
		f.ev(lib2("b"), contracts.JobQueued{Attempt: 1}),
		f.ev(lib2("b"), contracts.JobPending{Reason: "no free runner"}),
		f.ev(lib2("gate"), contracts.JobApproved{User: "carol"}),

		f.ev(buildSubject("old", 1), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush}),
		f.ev(repoSubject("old"), contracts.SecretSet{Name: "X", Value: sealed("x")}),
		f.ev(repoSubject("old"), contracts.RepoDeleted{}),
		f.ev(buildSubject("ghost", 1), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush}), // skipped
	}
	unknown := f.ev(repoSubject("app"), contracts.RepoDeleted{})
	unknown.Type = "repo.renamed" // skipped
	return append(evs, unknown)
}

func testGolden(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	f.apply(scenario(f)...)
	if skips := f.skipped(); len(skips) != 4 {
		t.Errorf("skips = %q, want 4", skips)
	}
	got := f.dump()
	path := filepath.Join("testdata", "scenario.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("Dump differs from %s (-want +got):\n%s", path, diff(string(want), got))
	}
	for _, b := range []struct {
		repo string
		n    int64
	}{{"app", 1}, {"app", 2}, {"lib", 2}} {
		f.build(b.repo, b.n) // validates
	}
}

func testExactlyOnce(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	events := scenario(f)
	f.apply(events...)
	want := f.dump()
	for _, batch := range [][]contracts.Event{events, events[10:], events[len(events)-1:]} {
		n, err := f.st.Apply(ctx, batch)
		if err != nil || n != 0 {
			t.Fatalf("re-Apply = %d, %v; want 0, nil", n, err)
		}
	}
	if got := f.dump(); got != want {
		t.Fatalf("re-applying changed rows:\n%s", diff(want, got))
	}

	// Overlapping batches apply only what is new.
	g := newFixture(t, open)
	for _, tt := range []struct{ from, to, want int }{{0, 10, 10}, {5, 20, 10}, {20, 20, 0}, {0, len(events), len(events) - 20}} {
		n, err := g.st.Apply(ctx, events[tt.from:tt.to])
		if err != nil || n != tt.want {
			t.Fatalf("Apply(events[%d:%d]) = %d, %v; want %d", tt.from, tt.to, n, err, tt.want)
		}
	}
	if got := g.dump(); got != want {
		t.Fatalf("overlapping batches differ from one batch:\n%s", diff(want, got))
	}
	if last, err := g.st.LastApplied(ctx); err != nil || last != int64(len(events)) {
		t.Fatalf("LastApplied = %d, %v; want %d", last, err, len(events))
	}
}

func testGap(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	events := scenario(f)
	f.apply(events[:3]...)
	before := f.dump()
	for _, tt := range []struct {
		batch []contracts.Event
		want  GapError
	}{
		{[]contracts.Event{events[3], events[5]}, GapError{Last: 3, Want: 5, Got: 6}},
		{[]contracts.Event{events[4]}, GapError{Last: 3, Want: 4, Got: 5}},
		{[]contracts.Event{events[1], events[2], events[3], events[4], events[4], events[6]}, GapError{Last: 3, Want: 6, Got: 7}},
	} {
		n, err := f.st.Apply(ctx, tt.batch)
		var gap *GapError
		if !errors.As(err, &gap) || *gap != tt.want || !errors.Is(err, ErrGap) || n != 0 {
			t.Fatalf("Apply with a gap = %d, %v; want 0, %v", n, err, &tt.want)
		}
		if got := f.dump(); got != before {
			t.Fatalf("Apply with a gap changed rows:\n%s", diff(before, got))
		}
	}
	// A canceled context applies nothing either.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if n, err := f.st.Apply(canceled, events[3:]); err == nil || n != 0 {
		t.Fatalf("Apply with a canceled context = %d, %v", n, err)
	}
	if last, err := f.st.LastApplied(ctx); err != nil || last != 3 {
		t.Fatalf("LastApplied = %d, %v; want 3", last, err)
	}
	f.apply(events[3:]...)
	if n, err := f.st.Apply(ctx, nil); n != 0 || err != nil {
		t.Fatalf("Apply(nil) = %d, %v", n, err)
	}
}

// testConcurrentApply applies the same events from several stores on one
// database at once, in batches of different sizes: each event is applied
// exactly once.
func testConcurrentApply(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	events := scenario(f)
	ref := newFixture(t, open)
	ref.apply(events...)
	want := ref.dump()

	const writers = 4
	stores := make([]*Store, writers)
	for i := range stores {
		stores[i] = f.open()
	}
	var (
		wg    sync.WaitGroup
		total [writers]int
		errs  [writers]error
		start = make(chan struct{})
	)
	for i, st := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			size := 2*i + 1
			for from := 0; from < len(events) && errs[i] == nil; from += size {
				n, err := st.Apply(context.Background(), events[from:min(from+size, len(events))])
				total[i] += n
				errs[i] = err
			}
		}()
	}
	close(start)
	wg.Wait()
	sum := 0
	for i := range stores {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		sum += total[i]
	}
	if sum != len(events) {
		t.Fatalf("writers applied %v events in all, want %d", total, len(events))
	}
	if got := f.dump(); got != want {
		t.Fatalf("concurrent Apply differs from one batch:\n%s", diff(want, got))
	}
}

func testResetRebuild(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	events := scenario(f)
	f.apply(events...)
	want := f.dump()
	if err := f.st.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if got := f.dump(); got != "meta last_applied=0\n" {
		t.Fatalf("Dump after Reset = %q", got)
	}
	if _, err := f.st.GetRepo(ctx, "app"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetRepo after Reset = %v", err)
	}
	for from := 0; from < len(events); from += 7 {
		f.apply(events[from:min(from+7, len(events))]...)
	}
	if got := f.dump(); got != want {
		t.Fatalf("rebuild differs from the original:\n%s", diff(want, got))
	}
}

func testReopen(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	f.apply(scenario(f)...)
	want := f.dump()
	repos, _, err := f.st.ListRepos(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	build := f.build("app", 1)
	job := f.job("lib", 2, "a")
	repo := f.repo("app")
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	f.st = f.open()
	if got := f.dump(); got != want {
		t.Fatalf("reopened store differs:\n%s", diff(want, got))
	}
	if got, _, err := f.st.ListRepos(ctx, "", 0); err != nil || !reflect.DeepEqual(got, repos) {
		t.Errorf("ListRepos after reopen = %+v, %v; want %+v", got, err, repos)
	}
	if got := f.build("app", 1); !reflect.DeepEqual(got, build) {
		t.Errorf("GetBuild after reopen = %+v\nwant %+v", got, build)
	}
	if got := f.job("lib", 2, "a"); !reflect.DeepEqual(got, job) {
		t.Errorf("GetJob after reopen = %+v\nwant %+v", got, job)
	}
	if got := f.repo("app"); !reflect.DeepEqual(got, repo) {
		t.Errorf("GetRepo after reopen = %+v\nwant %+v", got, repo)
	}
}

func testHundredBuilds(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app", DefaultBranch: "main"})
	var batch []contracts.Event
	for n := int64(1); n <= 100; n++ {
		batch = append(batch, f.ev(buildSubject("app", n), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush}))
	}
	f.apply(batch...)
	builds, err := f.st.ListBuilds(ctx, "app", "", 0, contracts.MaxListLimit)
	if err != nil || len(builds) != 100 {
		t.Fatalf("ListBuilds = %d builds, %v", len(builds), err)
	}
	for i, b := range builds {
		if b.Number != int64(100-i) || b.Status != contracts.BuildStatusQueued {
			t.Fatalf("builds[%d] = %d %s", i, b.Number, b.Status)
		}
	}
	if r := f.repo("app"); r.LastBuild != 100 {
		t.Fatalf("last build = %d", r.LastBuild)
	}
}

func testMigrate(t *testing.T, open func(testing.TB) Options) {
	ctx := context.Background()
	o := open(t)
	applied, err := Migrate(ctx, o)
	if err != nil || !slices.Equal(applied, []int64{1, 2}) {
		t.Fatalf("Migrate of a fresh database = %v, %v; want [1 2]", applied, err)
	}
	for range 2 {
		if applied, err := Migrate(ctx, o); err != nil || len(applied) != 0 {
			t.Fatalf("Migrate again = %v, %v; want none", applied, err)
		}
	}
	st, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if last, err := st.LastApplied(ctx); err != nil || last != 0 {
		t.Fatalf("LastApplied = %d, %v", last, err)
	}
}

// testConcurrentOpen opens one fresh database from 8 goroutines and 2
// other processes at once: all succeed, and the schema is migrated once.
func testConcurrentOpen(t *testing.T, open func(testing.TB) Options) {
	o := open(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := make(chan struct{})
	var procs []*exec.Cmd
	var outs []*strings.Builder
	for range 2 {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envHelper+"="+o.Driver+"\n"+o.DSN)
		out := new(strings.Builder)
		cmd.Stdout, cmd.Stderr = out, out
		procs, outs = append(procs, cmd), append(outs, out)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, err := Open(ctx, o)
			if err == nil {
				_, err = st.LastApplied(ctx)
				st.Close()
			}
			errs[i] = err
		}()
	}
	for _, cmd := range procs {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	close(start)
	wg.Wait()
	for i, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v: %s", i, err, outs[i])
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: Open: %v", i, err)
		}
	}
	dsn := o.DSN
	if o.Driver == DriverSQLite {
		dsn = sqliteDSN(o.DSN)
	}
	db, err := sqlx.Open(o.Driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var versions []int64
	if err := db.SelectContext(ctx, &versions, "SELECT version_id FROM goose_db_version ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions, []int64{0, 1, 2}) {
		t.Fatalf("goose versions = %v, want [0 1 2]: migrated more than once", versions)
	}
	if applied, err := Migrate(ctx, o); err != nil || len(applied) != 0 {
		t.Fatalf("Migrate after = %v, %v", applied, err)
	}
}

func testClosed(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	ev := f.ev(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app", DefaultBranch: "main"})
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	calls := map[string]error{}
	_, calls["Apply"] = f.st.Apply(ctx, []contracts.Event{ev})
	_, calls["LastApplied"] = f.st.LastApplied(ctx)
	calls["Reset"] = f.st.Reset(ctx)
	_, calls["Dump"] = f.st.Dump(ctx)
	_, calls["GetRepo"] = f.st.GetRepo(ctx, "app")
	_, _, calls["ListRepos"] = f.st.ListRepos(ctx, "", 0)
	_, calls["GetBuild"] = f.st.GetBuild(ctx, "app", 1)
	_, calls["ListBuilds"] = f.st.ListBuilds(ctx, "app", "", 0, 0)
	_, calls["GetJob"] = f.st.GetJob(ctx, "app", 1, "a")
	_, calls["SecretNames"] = f.st.SecretNames(ctx, "app")
	_, calls["Secrets"] = f.st.Secrets(ctx, "app", []string{"a"})
	_, calls["TokenByHash"] = f.st.TokenByHash(ctx, "x")
	_, calls["TokenExists"] = f.st.TokenExists(ctx, "x")
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func testActiveBuilds(t *testing.T, open func(testing.TB) Options) {
	f := newFixture(t, open)
	ctx := context.Background()
	lease := mustID(f.t, "0123456789abcdef0123456789abcdef")
	setupBuild(f, "app", 1) // running: a, b, deploy
	f.do(jobSubject("app", 1, "a"), contracts.JobQueued{Attempt: 1})
	f.do(jobSubject("app", 1, "a"), contracts.JobStarted{RunnerID: "r1", Attempt: 1, LeaseID: lease})
	f.do(buildSubject("app", 2), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush}) // queued
	f.do(buildSubject("app", 3), contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush})
	f.do(buildSubject("app", 3), contracts.BuildFinished{Status: contracts.BuildStatusError, Error: "no pipeline"})
	setupBuild(f, "lib", 1)
	f.do(buildSubject("lib", 1), contracts.BuildCanceled{User: "bob"}) // running, cancel requested

	all, err := f.st.ActiveBuilds(ctx, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range all {
		got = append(got, fmt.Sprintf("%s#%d:%s", b.Build.Repo, b.Build.Number, b.Build.Status))
	}
	if want := []string{"app#1:running", "app#2:queued", "lib#1:running"}; !slices.Equal(got, want) {
		t.Fatalf("ActiveBuilds = %v, want %v", got, want)
	}
	if err := (contracts.ActiveBuilds{Builds: all}).Validate(); err != nil {
		t.Fatal(err)
	}
	if b := all[0]; len(b.Build.Jobs) != 3 || b.Build.Jobs[0].Status != contracts.JobStatusRunning ||
		!maps.Equal(b.Leases, map[string]contracts.ID{"a": lease}) || b.CancelRequested {
		t.Fatalf("app#1 = %+v", b)
	}
	if !all[2].CancelRequested || all[1].CancelRequested || len(all[1].Build.Jobs) != 0 {
		t.Fatalf("cancel flags or jobs wrong: %+v", all)
	}
	page, err := f.st.ActiveBuilds(ctx, "app", 1, 1)
	if err != nil || len(page) != 1 || page[0].Build.Number != 2 {
		t.Fatalf("ActiveBuilds after app#1, limit 1 = %+v, %v", page, err)
	}
	page, err = f.st.ActiveBuilds(ctx, "app", 2, 10)
	if err != nil || len(page) != 1 || page[0].Build.Repo != "lib" {
		t.Fatalf("ActiveBuilds after app#2 = %+v, %v", page, err)
	}
}
