package datastore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/datastore/store"
	"github.com/zeroci/zeroci/modules/rpc"
)

func (d *Datastore) register(m *rpc.Mux) {
	rpc.Handle(m, d.createRepo)
	rpc.Handle(m, d.getRepo)
	rpc.Handle(m, d.listRepos)
	rpc.Handle(m, d.deleteRepo)
	rpc.Handle(m, d.getWebhookSecret)
	rpc.Handle(m, d.triggerBuild)
	rpc.Handle(m, d.getBuild)
	rpc.Handle(m, d.listBuilds)
	rpc.Handle(m, d.cancelBuild)
	rpc.Handle(m, d.retryBuild)
	rpc.Handle(m, d.approveJob)
	rpc.Handle(m, d.planBuild)
	rpc.Handle(m, d.updateBuild)
	rpc.Handle(m, d.updateJob)
	rpc.Handle(m, d.setSecret)
	rpc.Handle(m, d.listSecrets)
	rpc.Handle(m, d.getJobSecrets)
	rpc.Handle(m, d.listActive)
	rpc.Handle(m, d.sync)
	rpc.Handle(m, d.createToken)
	rpc.Handle(m, d.checkToken)
}

func notFound(format string, args ...any) error {
	return contracts.NewError(contracts.CodeNotFound, fmt.Sprintf(format, args...))
}

func conflict(format string, args ...any) error {
	return contracts.NewError(contracts.CodeConflict, fmt.Sprintf(format, args...))
}

// storeErr maps store.ErrNotFound to a not_found reply about what.
func storeErr(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound("%s not found", what)
	}
	return err
}

func repoWhat(name string) string { return fmt.Sprintf("repo %q", name) }
func buildWhat(repo string, n int64) string {
	return fmt.Sprintf("build %d of repo %q", n, repo)
}

// --- repositories

func (d *Datastore) createRepo(ctx context.Context, req contracts.CreateRepo) (contracts.Message, error) {
	defer d.lock("repo", req.Name)()
	if _, err := d.st.GetRepo(ctx, req.Name); err == nil {
		return nil, conflict("repo %q exists", req.Name)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	ev := contracts.RepoCreated{URL: req.URL, DefaultBranch: req.DefaultBranch, PollSeconds: req.PollSeconds}
	if ev.DefaultBranch == "" {
		ev.DefaultBranch = defaultBranch
	}
	if req.WebhookSecret != "" {
		ev.WebhookSecret = d.seal.seal(req.WebhookSecret, webhookAAD(req.Name))
	}
	if _, err := d.emit(ctx, contracts.Subject{Repo: req.Name}, ev); err != nil {
		return nil, err
	}
	return d.repo(ctx, req.Name)
}

func (d *Datastore) repo(ctx context.Context, name string) (contracts.Message, error) {
	rec, err := d.st.GetRepo(ctx, name)
	if err != nil {
		return nil, storeErr(err, repoWhat(name))
	}
	return rec.Repo, nil
}

func (d *Datastore) getRepo(ctx context.Context, req contracts.GetRepo) (contracts.Message, error) {
	return d.repo(ctx, req.Name)
}

func (d *Datastore) listRepos(ctx context.Context, req contracts.ListRepos) (contracts.Message, error) {
	limit := req.Limit
	if limit == 0 {
		limit = contracts.DefaultListLimit
	}
	repos, next, err := d.st.ListRepos(ctx, req.After, limit)
	if err != nil {
		return nil, err
	}
	if repos == nil {
		repos = []contracts.Repo{}
	}
	return contracts.RepoList{Repos: repos, Next: next}, nil
}

func (d *Datastore) deleteRepo(ctx context.Context, req contracts.DeleteRepo) (contracts.Message, error) {
	defer d.lock("repo", req.Name)()
	if _, err := d.st.GetRepo(ctx, req.Name); err != nil {
		return nil, storeErr(err, repoWhat(req.Name))
	}
	if _, err := d.emit(ctx, contracts.Subject{Repo: req.Name}, contracts.RepoDeleted{}); err != nil {
		return nil, err
	}
	return contracts.OK{}, nil
}

func (d *Datastore) getWebhookSecret(ctx context.Context, req contracts.GetWebhookSecret) (contracts.Message, error) {
	rec, err := d.st.GetRepo(ctx, req.Repo)
	if err != nil {
		return nil, storeErr(err, repoWhat(req.Repo))
	}
	out := contracts.WebhookSecret{Repo: req.Repo}
	if rec.WebhookSecret != "" {
		if out.Secret, err = d.seal.open(rec.WebhookSecret, webhookAAD(req.Repo)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// --- builds

func (d *Datastore) triggerBuild(ctx context.Context, req contracts.TriggerBuild) (contracts.Message, error) {
	defer d.lock("repo", req.Repo)()
	rec, err := d.st.GetRepo(ctx, req.Repo)
	if err != nil {
		return nil, storeErr(err, repoWhat(req.Repo))
	}
	if req.DedupKey != "" {
		n, found, err := d.st.BuildByDedupKey(ctx, req.Repo, req.DedupKey)
		if err != nil {
			return nil, err
		}
		if found {
			return d.build(ctx, req.Repo, n)
		}
	}
	ref := req.Ref
	if ref == "" {
		ref = rec.DefaultBranch
	}
	return d.newBuild(ctx, rec, contracts.BuildTriggered{
		Ref: ref, Commit: req.Commit, Params: req.Params, Event: req.Event, User: req.User, DedupKey: req.DedupKey,
	})
}

// newBuild publishes build.triggered with the repository's next number.
// The caller holds the repository's lock.
func (d *Datastore) newBuild(ctx context.Context, rec store.RepoRecord, ev contracts.BuildTriggered) (contracts.Message, error) {
	number := rec.LastBuild + 1
	if _, err := d.emit(ctx, contracts.Subject{Repo: rec.Name, Build: number}, ev); err != nil {
		return nil, err
	}
	return d.build(ctx, rec.Name, number)
}

func (d *Datastore) build(ctx context.Context, repo string, number int64) (contracts.Message, error) {
	b, err := d.st.GetBuild(ctx, repo, number)
	if err != nil {
		return nil, storeErr(err, buildWhat(repo, number))
	}
	return b, nil
}

func (d *Datastore) getBuild(ctx context.Context, req contracts.GetBuild) (contracts.Message, error) {
	return d.build(ctx, req.Repo, req.Number)
}

func (d *Datastore) listBuilds(ctx context.Context, req contracts.ListBuilds) (contracts.Message, error) {
	limit := req.Limit
	if limit == 0 {
		limit = contracts.DefaultListLimit
	}
	// ListBuilds checks the repo exists when it finds no builds.
	builds, err := d.st.ListBuilds(ctx, req.Repo, req.Status, req.Before, limit)
	if err != nil {
		return nil, storeErr(err, repoWhat(req.Repo))
	}
	if builds == nil {
		builds = []contracts.Build{}
	}
	return contracts.BuildList{Builds: builds}, nil
}

func (d *Datastore) cancelBuild(ctx context.Context, req contracts.CancelBuild) (contracts.Message, error) {
	defer d.lock("repo", req.Repo)()
	b, err := d.st.GetBuild(ctx, req.Repo, req.Number)
	if err != nil {
		return nil, storeErr(err, buildWhat(req.Repo, req.Number))
	}
	if b.Status.Terminal() {
		return b, nil
	}
	subject := contracts.Subject{Repo: req.Repo, Build: req.Number}
	if _, err := d.emit(ctx, subject, contracts.BuildCanceled{User: req.User}); err != nil {
		return nil, err
	}
	// Jobs that were waiting are canceled by the projection; a running
	// job is stopped by the scheduler, which then finishes the build.
	// With nothing running, the build is over now.
	if b, err = d.st.GetBuild(ctx, req.Repo, req.Number); err != nil {
		return nil, err
	}
	running := false
	for _, j := range b.Jobs {
		running = running || j.Status == contracts.JobStatusRunning
	}
	if !running && !b.Status.Terminal() {
		if _, err := d.emit(ctx, subject, contracts.BuildFinished{Status: contracts.BuildStatusCanceled}); err != nil {
			return nil, err
		}
	}
	return d.build(ctx, req.Repo, req.Number)
}

func (d *Datastore) retryBuild(ctx context.Context, req contracts.RetryBuild) (contracts.Message, error) {
	defer d.lock("repo", req.Repo)()
	rec, err := d.st.GetRepo(ctx, req.Repo)
	if err != nil {
		return nil, storeErr(err, repoWhat(req.Repo))
	}
	old, err := d.st.GetBuild(ctx, req.Repo, req.Number)
	if err != nil {
		return nil, storeErr(err, buildWhat(req.Repo, req.Number))
	}
	return d.newBuild(ctx, rec, contracts.BuildTriggered{
		Ref: old.Ref, Commit: old.Commit, Params: old.Params, Event: contracts.TriggerManual,
		User: req.User, RetryOf: old.Number,
	})
}

func (d *Datastore) planBuild(ctx context.Context, req contracts.PlanBuild) (contracts.Message, error) {
	defer d.lock("repo", req.Repo)()
	b, err := d.st.GetBuild(ctx, req.Repo, req.Number)
	if err != nil {
		return nil, storeErr(err, buildWhat(req.Repo, req.Number))
	}
	if b.Status != contracts.BuildStatusQueued {
		return nil, conflict("%s is %s; only a queued build can be planned", buildWhat(req.Repo, req.Number), b.Status)
	}
	if _, err := d.emit(ctx, contracts.Subject{Repo: req.Repo, Build: req.Number},
		contracts.BuildStarted{Commit: req.Commit, Jobs: req.Jobs}); err != nil {
		return nil, err
	}
	return d.build(ctx, req.Repo, req.Number)
}

func (d *Datastore) updateBuild(ctx context.Context, req contracts.UpdateBuild) (contracts.Message, error) {
	defer d.lock("repo", req.Repo)()
	b, err := d.st.GetBuild(ctx, req.Repo, req.Number)
	if err != nil {
		return nil, storeErr(err, buildWhat(req.Repo, req.Number))
	}
	if b.Status.Terminal() {
		return nil, conflict("%s already ended %s", buildWhat(req.Repo, req.Number), b.Status)
	}
	for _, j := range b.Jobs {
		if j.Status == contracts.JobStatusRunning {
			return nil, conflict("%s still has job %q running", buildWhat(req.Repo, req.Number), j.ID)
		}
	}
	if _, err := d.emit(ctx, contracts.Subject{Repo: req.Repo, Build: req.Number},
		contracts.BuildFinished{Status: req.Status, Error: req.Error}); err != nil {
		return nil, err
	}
	return d.build(ctx, req.Repo, req.Number)
}

// --- jobs

func (d *Datastore) job(ctx context.Context, ref contracts.JobRef) (store.JobRecord, error) {
	j, err := d.st.GetJob(ctx, ref.Repo, ref.Build, ref.Job)
	if err != nil {
		return j, storeErr(err, fmt.Sprintf("job %q of build %d of repo %q", ref.Job, ref.Build, ref.Repo))
	}
	return j, nil
}

func (d *Datastore) approveJob(ctx context.Context, req contracts.ApproveJob) (contracts.Message, error) {
	defer d.lock("repo", req.Repo)()
	ref := contracts.JobRef{Repo: req.Repo, Build: req.Number, Job: req.Job}
	j, err := d.job(ctx, ref)
	if err != nil {
		return nil, err
	}
	if j.Status != contracts.JobStatusBlocked {
		return nil, conflict("job %q is %s, not blocked", req.Job, j.Status)
	}
	if _, err := d.emit(ctx, subjectOf(ref), contracts.JobApproved{User: req.User}); err != nil {
		return nil, err
	}
	return d.build(ctx, req.Repo, req.Number)
}

func subjectOf(ref contracts.JobRef) contracts.Subject {
	return contracts.Subject{Repo: ref.Repo, Build: ref.Build, Job: ref.Job}
}

// updateJob turns a job's new status into its event, after checking the
// move is allowed: never out of a final status, never by an older attempt
// than the job's current one (a late result of a re-queued job).
func (d *Datastore) updateJob(ctx context.Context, req contracts.UpdateJob) (contracts.Message, error) {
	defer d.lock("repo", req.Job.Repo)()
	j, err := d.job(ctx, req.Job)
	if err != nil {
		return nil, err
	}
	if j.Status.Terminal() {
		return nil, conflict("job %q already ended %s", req.Job.Job, j.Status)
	}
	if req.Attempt != 0 && req.Attempt < j.Attempt {
		return nil, conflict("job %q is on attempt %d; attempt %d is over", req.Job.Job, j.Attempt, req.Attempt)
	}
	var payload contracts.Message
	switch req.Status {
	case contracts.JobStatusPending:
		if j.Status != contracts.JobStatusPending && j.Status != contracts.JobStatusQueued {
			return nil, conflict("job %q is %s; only a waiting job gets a pending reason", req.Job.Job, j.Status)
		}
		if req.Reason == "" {
			return nil, contracts.NewError(contracts.CodeInvalidArgument, "reason: required for pending")
		}
		payload = contracts.JobPending{Reason: req.Reason}
	case contracts.JobStatusQueued:
		if req.Attempt <= j.Attempt {
			return nil, conflict("job %q: queued attempt %d, want more than %d", req.Job.Job, req.Attempt, j.Attempt)
		}
		payload = contracts.JobQueued{Attempt: req.Attempt}
	case contracts.JobStatusBlocked:
		if req.Reason == "" {
			return nil, contracts.NewError(contracts.CodeInvalidArgument, "reason: required for blocked")
		}
		payload = contracts.JobBlocked{Reason: req.Reason}
	case contracts.JobStatusRunning:
		if j.Status != contracts.JobStatusQueued || req.Attempt != j.Attempt {
			return nil, conflict("job %q is %s on attempt %d; only its queued attempt can start", req.Job.Job, j.Status, j.Attempt)
		}
		if req.RunnerID == "" {
			return nil, contracts.NewError(contracts.CodeInvalidArgument, "runner_id: required for running")
		}
		payload = contracts.JobStarted{RunnerID: req.RunnerID, Attempt: req.Attempt, LeaseID: req.LeaseID}
	case contracts.JobStatusSkipped:
		if req.Reason == "" {
			return nil, contracts.NewError(contracts.CodeInvalidArgument, "reason: required for skipped")
		}
		payload = contracts.JobSkipped{Reason: req.Reason}
	default: // success, failure, canceled, error
		if (req.Status == contracts.JobStatusSuccess || req.Status == contracts.JobStatusFailure) &&
			(j.Status != contracts.JobStatusRunning || req.Attempt != j.Attempt) {
			return nil, conflict("job %q is %s on attempt %d; a result needs its running attempt", req.Job.Job, j.Status, j.Attempt)
		}
		var ms int64
		if !j.StartedAt.IsZero() {
			ms = max(0, req.Time.Sub(j.StartedAt).Milliseconds())
		}
		payload = contracts.JobFinished{Status: req.Status, ExitCode: req.ExitCode, Reason: req.Reason, Attempt: req.Attempt, DurationMs: ms}
	}
	if _, err := d.emit(ctx, subjectOf(req.Job), payload); err != nil {
		return nil, err
	}
	return d.build(ctx, req.Job.Repo, req.Job.Build)
}

// --- secrets

func (d *Datastore) setSecret(ctx context.Context, req contracts.SetSecret) (contracts.Message, error) {
	defer d.lock("repo", req.Repo)()
	if _, err := d.st.GetRepo(ctx, req.Repo); err != nil {
		return nil, storeErr(err, repoWhat(req.Repo))
	}
	sealed := d.seal.seal(req.Value, secretAAD(req.Repo, req.Name))
	if _, err := d.emit(ctx, contracts.Subject{Repo: req.Repo}, contracts.SecretSet{Name: req.Name, Value: sealed}); err != nil {
		return nil, err
	}
	return contracts.OK{}, nil
}

func (d *Datastore) listSecrets(ctx context.Context, req contracts.ListSecrets) (contracts.Message, error) {
	if _, err := d.st.GetRepo(ctx, req.Repo); err != nil {
		return nil, storeErr(err, repoWhat(req.Repo))
	}
	names, err := d.st.SecretNames(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{}
	}
	return contracts.SecretNames{Repo: req.Repo, Names: names}, nil
}

// getJobSecrets opens secrets for a job that is running under the lease
// the request shows, and for nobody else.
func (d *Datastore) getJobSecrets(ctx context.Context, req contracts.GetJobSecrets) (contracts.Message, error) {
	j, err := d.job(ctx, req.Job)
	if err != nil {
		return nil, err
	}
	if j.Status != contracts.JobStatusRunning || j.LeaseID.IsZero() || j.LeaseID != req.LeaseID {
		return nil, contracts.NewError(contracts.CodePermissionDenied, fmt.Sprintf("job %q is not running under this lease", req.Job.Job))
	}
	sealed, err := d.st.Secrets(ctx, req.Job.Repo, req.Names)
	if err != nil {
		return nil, err
	}
	out := contracts.JobSecrets{Values: make(map[string]contracts.Secret, len(req.Names))}
	for _, name := range req.Names {
		s, ok := sealed[name]
		if !ok {
			return nil, notFound("secret %q of repo %q not found", name, req.Job.Repo)
		}
		if out.Values[name], err = d.seal.open(s, secretAAD(req.Job.Repo, name)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// --- tokens

func (d *Datastore) createToken(ctx context.Context, req contracts.CreateToken) (contracts.Message, error) {
	defer d.lock("token", "")() // one at a time: names and hashes are both unique
	if ok, err := d.st.TokenExists(ctx, req.Name); err != nil {
		return nil, err
	} else if ok {
		return nil, conflict("token %q exists", req.Name)
	}
	if _, err := d.st.TokenByHash(ctx, req.Hash); err == nil {
		return nil, conflict("a token with this hash exists")
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if _, err := d.emit(ctx, contracts.Subject{}, contracts.TokenCreated{Name: req.Name, Scope: req.Scope, Hash: req.Hash}); err != nil {
		return nil, err
	}
	tok, err := d.st.TokenByHash(ctx, req.Hash)
	if err != nil {
		return nil, err
	}
	return tok, nil
}

func (d *Datastore) checkToken(ctx context.Context, req contracts.CheckToken) (contracts.Message, error) {
	tok, err := d.st.TokenByHash(ctx, req.Hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, contracts.NewError(contracts.CodeUnauthenticated, "unknown token")
	}
	if err != nil {
		return nil, err
	}
	return tok, nil
}

func mkdirFor(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("datastore: %w", err)
	}
	return nil
}

// sync answers once every event up to req.Seq is applied.
func (d *Datastore) sync(ctx context.Context, req contracts.Sync) (contracts.Message, error) {
	if err := d.waitApplied(ctx, req.Seq); err != nil {
		return nil, err
	}
	return contracts.Synced{Applied: d.lastApplied()}, nil
}

// listActive pages through the unfinished builds, for the scheduler.
func (d *Datastore) listActive(ctx context.Context, req contracts.ListActive) (contracts.Message, error) {
	builds, err := d.st.ActiveBuilds(ctx, req.AfterRepo, req.AfterNumber, req.Limit)
	if err != nil {
		return nil, err
	}
	return contracts.ActiveBuilds{Builds: builds}, nil
}
