package contracts

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Data store messages (service ServiceDatastore). Requests that change
// state answer with the state after the change (a Repo, a Build...), so a
// caller needs no second read. Errors: CodeNotFound for an unknown repo,
// build or job; CodeConflict for a name in use or a change the current
// status does not allow (approving a job that is not blocked, a job
// update that would move a status backwards); CodeUnauthenticated from
// check_token for an unknown hash.
const (
	TypeCreateRepo       = "datastore.create_repo"
	TypeGetRepo          = "datastore.get_repo"
	TypeListRepos        = "datastore.list_repos"
	TypeDeleteRepo       = "datastore.delete_repo"
	TypeGetWebhookSecret = "datastore.get_webhook_secret"
	TypeRepo             = "datastore.repo"
	TypeRepoList         = "datastore.repos"
	TypeWebhookSecret    = "datastore.webhook_secret"

	TypeTriggerBuild = "datastore.trigger_build"
	TypeGetBuild     = "datastore.get_build"
	TypeListBuilds   = "datastore.list_builds"
	TypeCancelBuild  = "datastore.cancel_build"
	TypeRetryBuild   = "datastore.retry_build"
	TypeApproveJob   = "datastore.approve_job"
	TypePlanBuild    = "datastore.plan_build"
	TypeUpdateBuild  = "datastore.update_build"
	TypeUpdateJob    = "datastore.update_job"
	TypeBuild        = "datastore.build"
	TypeBuildList    = "datastore.builds"

	TypeSetSecret     = "datastore.set_secret"
	TypeListSecrets   = "datastore.list_secrets"
	TypeGetJobSecrets = "datastore.get_job_secrets"
	TypeSecretNames   = "datastore.secret_names"
	TypeJobSecrets    = "datastore.job_secrets"

	TypeListActive   = "datastore.list_active"
	TypeActiveBuilds = "datastore.active_builds"

	TypeSync   = "datastore.sync"
	TypeSynced = "datastore.synced"

	TypeCreateToken = "datastore.create_token"
	TypeCheckToken  = "datastore.check_token"
	TypeToken       = "datastore.token"
)

// Poll intervals of repositories that are polled for new commits.
const (
	MinPollSeconds     = 60
	MaxPollSeconds     = 7 * 24 * 3600
	DefaultPollSeconds = MinPollSeconds // what "poll": true in the HTTP API means
)

const maxWebhookSecretLen = 256

// CreateRepo adds a repository (datastore.create_repo → datastore.repo).
//
// The HTTP body of POST /api/v1/repos (SPEC.md §5) has "poll", a boolean,
// where this message has poll_seconds, so the api module decodes that body
// into its own struct (CreateRepo would refuse "poll" as an unknown field)
// and maps "poll": true to DefaultPollSeconds, false or absent to 0.
// Repo.Polled gives the boolean back.
type CreateRepo struct {
	Name          string `json:"name"`
	URL           string `json:"url"`
	DefaultBranch string `json:"default_branch,omitempty"` // empty: the data store's default ("main")
	WebhookSecret Secret `json:"webhook_secret,omitempty"` // checks webhook signatures
	PollSeconds   int64  `json:"poll_seconds,omitempty"`   // 0: not polled
}

func (CreateRepo) MessageType() string { return TypeCreateRepo }

func (m CreateRepo) Validate() error {
	return validate(TypeCreateRepo,
		field("name", checkRepoName(m.Name)),
		field("url", checkURL(m.URL)),
		field("default_branch", opt(m.DefaultBranch, checkRef)),
		field("webhook_secret", checkWebhookSecret(m.WebhookSecret)),
		field("poll_seconds", checkPoll(m.PollSeconds)),
	)
}

// checkWebhookSecret accepts no secret, or a valid one of at most
// maxWebhookSecretLen bytes.
func checkWebhookSecret(s Secret) error {
	switch {
	case s == "":
		return nil
	case len(s) > maxWebhookSecretLen:
		return problem("%d bytes, max %d", len(s), maxWebhookSecretLen)
	}
	return checkSecret(s)
}

func checkPoll(s int64) error {
	if s == 0 {
		return nil
	}
	return between(s, MinPollSeconds, MaxPollSeconds)
}

// GetRepo reads a repository (datastore.get_repo → datastore.repo).
type GetRepo struct {
	Name string `json:"name"`
}

func (GetRepo) MessageType() string { return TypeGetRepo }

func (m GetRepo) Validate() error {
	return validate(TypeGetRepo, field("name", checkRepoName(m.Name)))
}

// ListRepos lists repositories by name (datastore.list_repos →
// datastore.repos).
type ListRepos struct {
	Limit int    `json:"limit,omitempty"` // 0 means DefaultListLimit
	After string `json:"after,omitempty"` // start after this name; RepoList.Next of the previous page
}

func (ListRepos) MessageType() string { return TypeListRepos }

func (m ListRepos) Validate() error {
	return validate(TypeListRepos,
		field("limit", checkLimit(m.Limit)),
		field("after", opt(m.After, checkRepoName)),
	)
}

// DeleteRepo removes a repository with its builds and secrets
// (datastore.delete_repo → reply.ok).
type DeleteRepo struct {
	Name string `json:"name"`
}

func (DeleteRepo) MessageType() string { return TypeDeleteRepo }

func (m DeleteRepo) Validate() error {
	return validate(TypeDeleteRepo, field("name", checkRepoName(m.Name)))
}

// GetWebhookSecret reads a repository's webhook secret, for the api
// module to check a webhook's signature (datastore.get_webhook_secret →
// datastore.webhook_secret). Restricted: only the api module sends it.
type GetWebhookSecret struct {
	Repo string `json:"repo"`
}

func (GetWebhookSecret) MessageType() string { return TypeGetWebhookSecret }

func (m GetWebhookSecret) Validate() error {
	return validate(TypeGetWebhookSecret, field("repo", checkRepoName(m.Repo)))
}

// Repo is a repository (datastore.repo).
type Repo struct {
	Name             string    `json:"name"`
	URL              string    `json:"url"`
	DefaultBranch    string    `json:"default_branch"`
	PollSeconds      int64     `json:"poll_seconds,omitempty"`
	HasWebhookSecret bool      `json:"has_webhook_secret"`
	CreatedAt        time.Time `json:"created_at"`
}

func (Repo) MessageType() string { return TypeRepo }

// Polled reports whether the repository is polled for new commits: the
// "poll" of the HTTP API.
func (m Repo) Polled() bool { return m.PollSeconds != 0 }

func (m Repo) Validate() error { return validate(TypeRepo, m.check()) }

func (m Repo) check() error {
	return all(
		field("name", checkRepoName(m.Name)),
		field("url", checkURL(m.URL)),
		field("default_branch", checkRef(m.DefaultBranch)),
		field("poll_seconds", checkPoll(m.PollSeconds)),
		field("created_at", checkTime(m.CreatedAt)),
	)
}

// RepoList answers ListRepos (datastore.repos).
type RepoList struct {
	Repos []Repo `json:"repos"`          // ascending names
	Next  string `json:"next,omitempty"` // the After of the next page; empty on the last page
}

func (RepoList) MessageType() string { return TypeRepoList }

func (m RepoList) Validate() error {
	prev := ""
	repos := each(m.Repos, MaxListLimit, func(r Repo) error {
		if err := r.check(); err != nil {
			return err
		}
		if r.Name <= prev {
			return field("name", problem("%s after %s: not ascending", quote(r.Name), quote(prev)))
		}
		prev = r.Name
		return nil
	})
	return validate(TypeRepoList,
		field("repos", repos),
		field("next", opt(m.Next, checkRepoName)),
	)
}

// WebhookSecret answers GetWebhookSecret (datastore.webhook_secret).
type WebhookSecret struct {
	Repo   string `json:"repo"`
	Secret Secret `json:"secret,omitempty"` // empty: the repository has none, and webhooks are refused
}

func (WebhookSecret) MessageType() string { return TypeWebhookSecret }

func (m WebhookSecret) Validate() error {
	return validate(TypeWebhookSecret,
		field("repo", checkRepoName(m.Repo)),
		field("secret", checkWebhookSecret(m.Secret)),
	)
}

// TriggerBuild creates a build with the repository's next number, from 1
// with no gaps (datastore.trigger_build → datastore.build, status queued).
type TriggerBuild struct {
	Repo   string            `json:"repo"`
	Ref    string            `json:"ref,omitempty"`    // empty: the default branch
	Commit string            `json:"commit,omitempty"` // empty: the ref's head; may be abbreviated
	Params map[string]string `json:"params,omitempty"`
	Event  TriggerKind       `json:"event"`
	User   string            `json:"user,omitempty"` // the user or token name, or the webhook's sender
	// DedupKey, if set, is unique per repository (a webhook's delivery id,
	// "poll:" and a polled commit): a trigger with a key already used
	// answers the build that key made and makes none.
	DedupKey string `json:"dedup_key,omitempty"`
}

func (TriggerBuild) MessageType() string { return TypeTriggerBuild }

func (m TriggerBuild) Validate() error {
	return validate(TypeTriggerBuild,
		field("repo", checkRepoName(m.Repo)),
		field("ref", opt(m.Ref, checkRef)),
		field("commit", opt(m.Commit, checkCommitish)),
		field("params", checkParams(m.Params)),
		field("event", m.Event.check()),
		field("user", checkUser(m.User)),
		field("dedup_key", checkText(m.DedupKey, MaxDedupKey, false)),
	)
}

// MaxDedupKey bounds TriggerBuild.DedupKey.
const MaxDedupKey = 200

// GetBuild reads a build with its jobs (datastore.get_build →
// datastore.build).
type GetBuild struct {
	Repo   string `json:"repo"`
	Number int64  `json:"number"`
}

func (GetBuild) MessageType() string { return TypeGetBuild }

func (m GetBuild) Validate() error {
	return validate(TypeGetBuild,
		field("repo", checkRepoName(m.Repo)),
		field("number", checkBuildNumber(m.Number)),
	)
}

// ListBuilds lists a repository's builds, newest first
// (datastore.list_builds → datastore.builds).
type ListBuilds struct {
	Repo   string      `json:"repo"`
	Status BuildStatus `json:"status,omitempty"` // only builds in this status
	Limit  int         `json:"limit,omitempty"`  // 0 means DefaultListLimit
	Before int64       `json:"before,omitempty"` // only builds numbered below this; 0: from the newest
}

func (ListBuilds) MessageType() string { return TypeListBuilds }

func (m ListBuilds) Validate() error {
	var status error
	if m.Status != "" {
		status = m.Status.check()
	}
	return validate(TypeListBuilds,
		field("repo", checkRepoName(m.Repo)),
		field("status", status),
		field("limit", checkLimit(m.Limit)),
		field("before", nonNegative(m.Before)),
	)
}

// CancelBuild cancels a build's unfinished jobs (datastore.cancel_build →
// datastore.build). Canceling a finished build is not an error: the reply
// shows it unchanged.
type CancelBuild struct {
	Repo   string `json:"repo"`
	Number int64  `json:"number"`
	User   string `json:"user,omitempty"`
}

func (CancelBuild) MessageType() string { return TypeCancelBuild }

func (m CancelBuild) Validate() error {
	return validate(TypeCancelBuild,
		field("repo", checkRepoName(m.Repo)),
		field("number", checkBuildNumber(m.Number)),
		field("user", checkUser(m.User)),
	)
}

// RetryBuild creates a new build of the same ref, commit and params
// (datastore.retry_build → datastore.build: the new build, RetryOf set).
type RetryBuild struct {
	Repo   string `json:"repo"`
	Number int64  `json:"number"`
	User   string `json:"user,omitempty"`
}

func (RetryBuild) MessageType() string { return TypeRetryBuild }

func (m RetryBuild) Validate() error {
	return validate(TypeRetryBuild,
		field("repo", checkRepoName(m.Repo)),
		field("number", checkBuildNumber(m.Number)),
		field("user", checkUser(m.User)),
	)
}

// ApproveJob unblocks a manual job (datastore.approve_job →
// datastore.build). CodeConflict if the job is not blocked.
type ApproveJob struct {
	Repo   string `json:"repo"`
	Number int64  `json:"number"`
	Job    string `json:"job"`
	User   string `json:"user,omitempty"`
}

func (ApproveJob) MessageType() string { return TypeApproveJob }

func (m ApproveJob) Validate() error {
	return validate(TypeApproveJob,
		field("repo", checkRepoName(m.Repo)),
		field("number", checkBuildNumber(m.Number)),
		field("job", checkJobName(m.Job)),
		field("user", checkUser(m.User)),
	)
}

// PlanBuild records what the scheduler read from the pipeline file: the
// resolved commit and the jobs, all pending (manual ones blocked). The
// build becomes running (datastore.plan_build → datastore.build).
type PlanBuild struct {
	Repo   string       `json:"repo"`
	Number int64        `json:"number"`
	Commit string       `json:"commit"` // the full commit id
	Jobs   []PlannedJob `json:"jobs"`   // in pipeline order; a DAG by depends_on
}

// PlannedJob is one job of a PlanBuild.
type PlannedJob struct {
	ID        string   `json:"id"`
	DependsOn []string `json:"depends_on,omitempty"`
	Manual    bool     `json:"manual,omitempty"`
}

func (PlanBuild) MessageType() string { return TypePlanBuild }

func (m PlanBuild) Validate() error {
	ids := make([]string, len(m.Jobs))
	deps := make([][]string, len(m.Jobs))
	for i, j := range m.Jobs {
		ids[i], deps[i] = j.ID, j.DependsOn
	}
	jobs := checkJobGraph(ids, deps)
	if jobs == nil && len(m.Jobs) == 0 {
		jobs = problem("required: a pipeline without jobs fails with update_build")
	}
	return validate(TypePlanBuild,
		field("repo", checkRepoName(m.Repo)),
		field("number", checkBuildNumber(m.Number)),
		field("commit", checkCommit(m.Commit)),
		field("jobs", jobs),
	)
}

// UpdateBuild sets a build's final status, e.g. error with the reason
// when its pipeline file is invalid, or the result once its jobs are done
// (datastore.update_build → datastore.build). A build becomes running by
// PlanBuild, so Status is one of the final statuses.
type UpdateBuild struct {
	Repo   string      `json:"repo"`
	Number int64       `json:"number"`
	Status BuildStatus `json:"status"`
	Error  string      `json:"error,omitempty"` // e.g. "pipeline.yaml:3: unknown key \"scirpt\""
}

func (UpdateBuild) MessageType() string { return TypeUpdateBuild }

func (m UpdateBuild) Validate() error {
	return validate(TypeUpdateBuild,
		field("repo", checkRepoName(m.Repo)),
		field("number", checkBuildNumber(m.Number)),
		field("status", checkFinal(m.Status)),
		field("error", checkText(m.Error, MaxBuildError, true)),
	)
}

// checkFinal requires a final build status.
func checkFinal(s BuildStatus) error {
	if err := s.check(); err != nil {
		return err
	}
	if !s.Terminal() {
		return problem("%s is not a final status (success|failure|canceled|error)", quote(string(s)))
	}
	return nil
}

// UpdateJob moves a job to a new status (datastore.update_job →
// datastore.build). Time is when the change happened; the data store sets
// started_at from it for running and finished_at for final statuses.
type UpdateJob struct {
	Job      JobRef    `json:"job"`
	Status   JobStatus `json:"status"`
	Attempt  int       `json:"attempt,omitempty"`   // required for queued, running, success and failure
	RunnerID string    `json:"runner_id,omitempty"` // the runner, when running or done
	LeaseID  ID        `json:"lease_id,omitzero"`   // the runner's lease, when running
	ExitCode *int      `json:"exit_code,omitempty"`
	Reason   string    `json:"reason,omitempty"` // why it is pending, blocked, skipped, failed...
	Time     time.Time `json:"time"`
}

func (UpdateJob) MessageType() string { return TypeUpdateJob }

func (m UpdateJob) Validate() error {
	// A job that never reached a runner has no attempt: it can be
	// pending, blocked, skipped, canceled, or failed by the infrastructure.
	attempt := checkAttempt(m.Attempt)
	switch m.Status {
	case JobStatusQueued, JobStatusRunning, JobStatusSuccess, JobStatusFailure:
	default:
		if m.Attempt == 0 {
			attempt = nil
		}
	}
	return validate(TypeUpdateJob,
		field("job", m.Job.check()),
		field("status", m.Status.check()),
		field("attempt", attempt),
		field("runner_id", opt(m.RunnerID, checkRunnerID)),
		field("exit_code", checkExitCode(m.ExitCode)),
		field("reason", checkReason(m.Reason)),
		field("time", checkTime(m.Time)),
	)
}

// Build is a build, with its jobs when read one at a time (datastore.build).
// Its JSON is what GET /api/v1/repos/{repo}/builds/{number} serves.
type Build struct {
	Repo       string            `json:"repo"`
	Number     int64             `json:"number"`
	Status     BuildStatus       `json:"status"`
	Ref        string            `json:"ref"`
	Commit     string            `json:"commit,omitempty"` // as triggered (empty, or maybe abbreviated) until the scheduler resolves it, then the full id
	Params     map[string]string `json:"params,omitempty"`
	Event      TriggerKind       `json:"event"`
	User       string            `json:"user,omitempty"`
	RetryOf    int64             `json:"retry_of,omitempty"`
	Error      string            `json:"error,omitempty"` // why it failed before or outside its jobs
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	FinishedAt time.Time         `json:"finished_at,omitzero"`
	Jobs       []Job             `json:"jobs,omitempty"` // in pipeline order; absent in lists
}

// Job is one job of a build.
type Job struct {
	ID         string    `json:"id"`
	Status     JobStatus `json:"status"`
	DependsOn  []string  `json:"depends_on,omitempty"`
	Manual     bool      `json:"manual,omitempty"`
	Attempt    int       `json:"attempt,omitempty"` // 0 until first queued
	RunnerID   string    `json:"runner_id,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Reason     string    `json:"reason,omitempty"` // why it is pending, blocked, skipped or failed
}

func (Build) MessageType() string { return TypeBuild }

func (m Build) Validate() error { return validate(TypeBuild, m.check()) }

func (m Build) check() error {
	ids := make([]string, len(m.Jobs))
	deps := make([][]string, len(m.Jobs))
	for i, j := range m.Jobs {
		ids[i], deps[i] = j.ID, j.DependsOn
	}
	var retryOf error
	if m.RetryOf < 0 || m.RetryOf != 0 && m.RetryOf >= m.Number {
		retryOf = problem("%d, want an earlier build's number", m.RetryOf)
	}
	return all(
		field("repo", checkRepoName(m.Repo)),
		field("number", checkBuildNumber(m.Number)),
		field("status", m.Status.check()),
		field("ref", checkRef(m.Ref)),
		field("commit", opt(m.Commit, checkCommitish)),
		field("params", checkParams(m.Params)),
		field("event", m.Event.check()),
		field("user", checkUser(m.User)),
		field("retry_of", retryOf),
		field("error", checkText(m.Error, MaxBuildError, true)),
		field("created_at", checkTime(m.CreatedAt)),
		field("started_at", optTime(m.StartedAt)),
		field("finished_at", all(optTime(m.FinishedAt), checkOrder(m.StartedAt, m.FinishedAt))),
		field("jobs", all(checkJobGraph(ids, deps), each(m.Jobs, MaxJobs, Job.check))),
	)
}

func (j Job) check() error {
	return all(
		field("status", j.Status.check()),
		field("attempt", between(j.Attempt, 0, maxAttempts)),
		field("runner_id", opt(j.RunnerID, checkRunnerID)),
		field("started_at", optTime(j.StartedAt)),
		field("finished_at", all(optTime(j.FinishedAt), checkOrder(j.StartedAt, j.FinishedAt))),
		field("exit_code", checkExitCode(j.ExitCode)),
		field("reason", checkReason(j.Reason)),
	)
}

// BuildList answers ListBuilds (datastore.builds).
type BuildList struct {
	Builds []Build `json:"builds"` // newest (highest number) first, all of the requested repo
}

func (BuildList) MessageType() string { return TypeBuildList }

func (m BuildList) Validate() error {
	var prev Build
	builds := each(m.Builds, MaxListLimit, func(b Build) error {
		if err := b.check(); err != nil {
			return err
		}
		if prev.Repo != "" && b.Repo != prev.Repo {
			return field("repo", problem("%s among builds of %s", quote(b.Repo), quote(prev.Repo)))
		}
		if prev.Number != 0 && b.Number >= prev.Number {
			return field("number", problem("%d after %d: not newest first", b.Number, prev.Number))
		}
		prev = b
		return nil
	})
	return validate(TypeBuildList, field("builds", builds))
}

// SetSecret creates or replaces a repository secret (datastore.set_secret
// → reply.ok).
type SetSecret struct {
	Repo  string `json:"repo"`
	Name  string `json:"name"`
	Value Secret `json:"value"`
}

func (SetSecret) MessageType() string { return TypeSetSecret }

func (m SetSecret) Validate() error {
	return validate(TypeSetSecret,
		field("repo", checkRepoName(m.Repo)),
		field("name", checkEnvName(m.Name)),
		field("value", checkSecret(m.Value)),
	)
}

// ListSecrets lists a repository's secret names (datastore.list_secrets →
// datastore.secret_names).
type ListSecrets struct {
	Repo string `json:"repo"`
}

func (ListSecrets) MessageType() string { return TypeListSecrets }

func (m ListSecrets) Validate() error {
	return validate(TypeListSecrets, field("repo", checkRepoName(m.Repo)))
}

// SecretNames answers ListSecrets (datastore.secret_names): names only.
type SecretNames struct {
	Repo  string   `json:"repo"`
	Names []string `json:"names"` // ascending
}

func (SecretNames) MessageType() string { return TypeSecretNames }

func (m SecretNames) Validate() error {
	prev := ""
	names := each(m.Names, maxNamesList, func(n string) error {
		if err := checkEnvName(n); err != nil {
			return err
		}
		if n <= prev {
			return problem("%s after %s: not ascending", quote(n), quote(prev))
		}
		prev = n
		return nil
	})
	return validate(TypeSecretNames,
		field("repo", checkRepoName(m.Repo)),
		field("names", names),
	)
}

// GetJobSecrets reads the values of the secrets a running job uses
// (datastore.get_job_secrets → datastore.job_secrets). Restricted: only a
// runner sends it, with the lease of the job's current attempt; the data
// store refuses (CodePermissionDenied) unless that job is running under
// that lease.
type GetJobSecrets struct {
	Job     JobRef   `json:"job"`
	LeaseID ID       `json:"lease_id"`
	Names   []string `json:"names"`
}

func (GetJobSecrets) MessageType() string { return TypeGetJobSecrets }

func (m GetJobSecrets) Validate() error {
	return validate(TypeGetJobSecrets,
		field("job", m.Job.check()),
		field("lease_id", checkID(m.LeaseID)),
		field("names", unique(m.Names, maxNamesList, checkEnvName)),
	)
}

// JobSecrets answers GetJobSecrets (datastore.job_secrets).
type JobSecrets struct {
	Values map[string]Secret `json:"values"` // by secret name
}

func (JobSecrets) MessageType() string { return TypeJobSecrets }

func (m JobSecrets) Validate() error {
	return validate(TypeJobSecrets, field("values", eachEntry(m.Values, maxNamesList, func(k string, v Secret) error {
		return all(checkEnvName(k), checkSecret(v))
	})))
}

// CreateToken stores a new API token's hash (datastore.create_token →
// datastore.token). The api module makes the token, shows it once and
// sends only TokenHash(token). CodeConflict if the name is in use.
type CreateToken struct {
	Name  string     `json:"name"`
	Scope TokenScope `json:"scope"`
	Hash  string     `json:"hash"` // TokenHash of the token
}

func (CreateToken) MessageType() string { return TypeCreateToken }

func (m CreateToken) Validate() error {
	return validate(TypeCreateToken,
		field("name", checkRepoName(m.Name)),
		field("scope", m.Scope.check()),
		field("hash", checkSHA256(m.Hash)),
	)
}

// CheckToken looks a token up by its hash (datastore.check_token →
// datastore.token, or CodeUnauthenticated).
type CheckToken struct {
	Hash string `json:"hash"`
}

func (CheckToken) MessageType() string { return TypeCheckToken }

func (m CheckToken) Validate() error {
	return validate(TypeCheckToken, field("hash", checkSHA256(m.Hash)))
}

// Token is an API token's record, without the token (datastore.token).
type Token struct {
	Name      string     `json:"name"`
	Scope     TokenScope `json:"scope"`
	CreatedAt time.Time  `json:"created_at"`
}

func (Token) MessageType() string { return TypeToken }

func (m Token) Validate() error {
	return validate(TypeToken,
		field("name", checkRepoName(m.Name)),
		field("scope", m.Scope.check()),
		field("created_at", checkTime(m.CreatedAt)),
	)
}

// TokenHash returns the hash under which a token is stored and looked up:
// the lowercase hex SHA-256 of the token. (Tokens are random and long, so
// a plain hash is enough; there is nothing to guess.)
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Sync waits until the data store has applied every event up to Seq
// (datastore.sync → datastore.synced), or the request's deadline passes
// (CodeUnavailable). A reader that saw the hub's head at Seq and then reads
// the data store sees every change up to it: the scheduler does this when
// it starts, before it scans for unfinished builds.
type Sync struct {
	Seq int64 `json:"seq"`
}

func (Sync) MessageType() string { return TypeSync }

func (m Sync) Validate() error {
	return validate(TypeSync, field("seq", nonNegative(m.Seq)))
}

// Synced answers Sync (datastore.synced) with the last applied event's seq.
type Synced struct {
	Applied int64 `json:"applied"`
}

func (Synced) MessageType() string { return TypeSynced }

func (m Synced) Validate() error {
	return validate(TypeSynced, field("applied", nonNegative(m.Applied)))
}

// ListActive lists the builds that are queued or running, with their jobs
// and the leases of their running jobs, ordered by repository and number
// (datastore.list_active → datastore.active_builds). Restricted: the
// scheduler reads it when it starts, to pick up every unfinished build.
// A page ends after Limit builds; the next starts after the last one.
type ListActive struct {
	AfterRepo   string `json:"after_repo,omitempty"`
	AfterNumber int64  `json:"after_number,omitempty"`
	Limit       int    `json:"limit,omitempty"` // 0: DefaultListLimit
}

func (ListActive) MessageType() string { return TypeListActive }

func (m ListActive) Validate() error {
	return validate(TypeListActive,
		field("after_repo", opt(m.AfterRepo, checkRepoName)),
		field("after_number", nonNegative(m.AfterNumber)),
		field("limit", checkLimit(m.Limit)),
	)
}

// ActiveBuilds answers ListActive (datastore.active_builds).
type ActiveBuilds struct {
	Builds []ActiveBuild `json:"builds"`
}

// ActiveBuild is an unfinished build as the scheduler needs it.
type ActiveBuild struct {
	Build           Build         `json:"build"` // with its jobs
	CancelRequested bool          `json:"cancel_requested,omitempty"`
	Leases          map[string]ID `json:"leases,omitempty"` // running job id → the lease it runs under
}

func (ActiveBuilds) MessageType() string { return TypeActiveBuilds }

func (m ActiveBuilds) Validate() error {
	return validate(TypeActiveBuilds, field("builds", each(m.Builds, MaxListLimit, func(b ActiveBuild) error {
		return all(
			field("build", b.Build.check()),
			field("leases", eachEntry(b.Leases, MaxJobs, func(k string, v ID) error {
				return all(checkJobName(k), checkID(v))
			})),
		)
	})))
}
