package contracts

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event types (SPEC.md §6). Each names a payload type below; the payload
// travels in an Event record.
const (
	TypeRepoCreated    = "repo.created"
	TypeRepoDeleted    = "repo.deleted"
	TypeBuildTriggered = "build.triggered"
	TypeBuildQueued    = "build.queued"
	TypeBuildStarted   = "build.started"
	TypeBuildCanceled  = "build.canceled"
	TypeBuildFinished  = "build.finished"
	TypeJobPending     = "job.pending"
	TypeJobQueued      = "job.queued"
	TypeJobBlocked     = "job.blocked"
	TypeJobApproved    = "job.approved"
	TypeJobStarted     = "job.started"
	TypeJobFinished    = "job.finished"
	TypeJobSkipped     = "job.skipped"
	TypeLogClosed      = "log.closed"
	TypeSecretSet      = "secret.set"
	TypeTokenCreated   = "token.created"
)

// MaxEventPayload bounds Event.Payload: events are kept for ever.
const MaxEventPayload = 256 << 10

// Event is one entry of the hub's log, as the hub stores it, replies with
// it (eventhub.events), publishes it (type eventhub.event, on
// EventTopic(Type)) and as GET /api/v1/events serves it in "data:".
//
// Repo, Build and Job are set exactly as the type's SubjectLevel says
// (TypeInfo.Subject): repo events carry repo; build events repo and build;
// job and log events all three; token.created none.
type Event struct {
	// Seq is the event's place in the hub's single global sequence,
	// from 1, assigned by the hub; 0 in eventhub.publish.
	Seq int64 `json:"seq,omitempty"`
	// ID is chosen by the publisher and makes publishing idempotent: the
	// hub stores an ID once and answers a repeat with the first Seq.
	ID      ID              `json:"id"`
	Type    string          `json:"type"`    // a registered event type, e.g. "build.finished"
	Version uint16          `json:"version"` // the payload's schema version
	Time    time.Time       `json:"time"`    // when it happened
	Repo    string          `json:"repo,omitempty"`
	Build   int64           `json:"build,omitempty"` // build number
	Job     string          `json:"job,omitempty"`   // job name
	Payload json.RawMessage `json:"payload"`         // the JSON of the type's payload struct
}

// Subject is what an event is about; see Event.
type Subject struct {
	Repo  string
	Build int64
	Job   string
}

// NewEvent returns an event (without Seq) about subject with a fresh ID,
// the current time and payload's JSON. payload must be an event payload
// type of this package, and subject must fit its SubjectLevel.
func NewEvent(subject Subject, payload Message) (Event, error) {
	typ, err := typeOf(payload)
	if err != nil {
		return Event{}, err
	}
	info, err := eventInfo(typ)
	if err != nil {
		return Event{}, err
	}
	data, err := encodePayload(info, payload)
	if err != nil {
		return Event{}, err
	}
	now := time.Now().UTC()
	ev := Event{
		ID: NewID(now), Type: typ, Version: info.Version, Time: now,
		Repo: subject.Repo, Build: subject.Build, Job: subject.Job,
		Payload: data,
	}
	if err := validate(typ, ev.check(false)); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// MessageType returns TypeEvent: a stored event published by the hub.
func (Event) MessageType() string { return TypeEvent }

// Validate checks a stored event (Seq >= 1), including its payload, which
// must decode strictly into the type's payload struct and validate.
func (e Event) Validate() error { return validate(TypeEvent, e.check(true)) }

// DecodePayload returns the payload as its struct value (e.g. a
// BuildFinished), checked as DecodeAny does.
func (e Event) DecodePayload() (Message, error) {
	info, err := e.info()
	if err != nil {
		return nil, err
	}
	return info.decode(e.Payload)
}

func (e Event) info() (TypeInfo, error) {
	info, err := eventInfo(e.Type)
	if err != nil {
		return info, err
	}
	return info, checkVersion(info, e.Version)
}

// eventInfo returns the registry entry of the event type typ.
func eventInfo(typ string) (TypeInfo, error) {
	info, ok := registry[typ]
	if !ok || info.Kind != KindEvent {
		return info, fmt.Errorf("%w: %s is not an event type", ErrUnknownType, quote(typ))
	}
	return info, nil
}

// check validates e; stored says whether the hub has numbered it.
func (e Event) check(stored bool) error {
	var seq error
	switch {
	case stored && e.Seq < 1:
		seq = problem("%d, want >= 1", e.Seq)
	case !stored && e.Seq != 0:
		seq = problem("must be 0: the hub assigns it")
	}
	info, typeErr := e.info()
	if typeErr != nil {
		return all(field("seq", seq), field("id", checkID(e.ID)), field("type", typeErr))
	}
	var payload error
	if len(e.Payload) > MaxEventPayload {
		payload = problem("%d bytes, max %d", len(e.Payload), MaxEventPayload)
	} else if _, err := info.decode(e.Payload); err != nil {
		payload = err
	}
	return all(
		field("seq", seq),
		field("id", checkID(e.ID)),
		field("time", checkTime(e.Time)),
		e.checkSubject(info.Subject),
		field("payload", payload),
	)
}

func (e Event) checkSubject(level SubjectLevel) error {
	absent := func(set bool) error {
		if set {
			return problem("must be empty for %s", e.Type)
		}
		return nil
	}
	repo, build, job := absent(e.Repo != ""), absent(e.Build != 0), absent(e.Job != "")
	if level >= SubjectRepo {
		repo = checkRepoName(e.Repo)
	}
	if level >= SubjectBuild {
		build = checkBuildNumber(e.Build)
	}
	if level >= SubjectJob {
		job = checkJobName(e.Job)
	}
	return all(field("repo", repo), field("build", build), field("job", job))
}

// RepoCreated: a repository was added (repo.created).
type RepoCreated struct {
	URL           string `json:"url"`
	DefaultBranch string `json:"default_branch"`
	PollSeconds   int64  `json:"poll_seconds,omitempty"` // 0: not polled
	// WebhookSecret is the repository's webhook secret sealed by the data
	// store (see Sealed); empty when it has none.
	WebhookSecret Sealed `json:"webhook_secret,omitempty"`
}

func (RepoCreated) MessageType() string { return TypeRepoCreated }

func (m RepoCreated) Validate() error {
	return validate(TypeRepoCreated,
		field("url", checkURL(m.URL)),
		field("default_branch", checkRef(m.DefaultBranch)),
		field("poll_seconds", checkPoll(m.PollSeconds)),
		field("webhook_secret", optSealed(m.WebhookSecret)),
	)
}

// RepoDeleted: a repository was removed (repo.deleted).
type RepoDeleted struct{}

func (RepoDeleted) MessageType() string { return TypeRepoDeleted }
func (RepoDeleted) Validate() error     { return nil }

// BuildTriggered: a build was created with its number (build.triggered).
type BuildTriggered struct {
	Ref     string            `json:"ref"`              // the branch or tag to build
	Commit  string            `json:"commit,omitempty"` // as given, possibly abbreviated; empty: the ref's head
	Params  map[string]string `json:"params,omitempty"`
	Event   TriggerKind       `json:"event"`
	User    string            `json:"user,omitempty"`     // the user or token name, or the webhook's sender
	RetryOf int64             `json:"retry_of,omitempty"` // the build this one retries
	// DedupKey is TriggerBuild.DedupKey: later triggers with it get this build.
	DedupKey string `json:"dedup_key,omitempty"`
}

func (BuildTriggered) MessageType() string { return TypeBuildTriggered }

func (m BuildTriggered) Validate() error {
	return validate(TypeBuildTriggered,
		field("ref", checkRef(m.Ref)),
		field("commit", opt(m.Commit, checkCommitish)),
		field("params", checkParams(m.Params)),
		field("event", m.Event.check()),
		field("user", checkUser(m.User)),
		field("retry_of", nonNegative(m.RetryOf)),
		field("dedup_key", checkText(m.DedupKey, MaxDedupKey, false)),
	)
}

// BuildQueued: the build waits for the scheduler (build.queued).
type BuildQueued struct{}

func (BuildQueued) MessageType() string { return TypeBuildQueued }
func (BuildQueued) Validate() error     { return nil }

// BuildStarted: the pipeline was read at Commit and its jobs created,
// all pending but the manual ones, which are blocked (build.started).
type BuildStarted struct {
	Commit string       `json:"commit"` // the full commit id
	Jobs   []PlannedJob `json:"jobs"`   // in pipeline order; a DAG by depends_on
}

func (BuildStarted) MessageType() string { return TypeBuildStarted }

func (m BuildStarted) Validate() error {
	return validate(TypeBuildStarted,
		field("commit", checkCommit(m.Commit)),
		field("jobs", checkPlannedJobs(m.Jobs)),
	)
}

// checkPlannedJobs checks a non-empty job graph.
func checkPlannedJobs(jobs []PlannedJob) error {
	ids := make([]string, len(jobs))
	deps := make([][]string, len(jobs))
	for i, j := range jobs {
		ids[i], deps[i] = j.ID, j.DependsOn
	}
	if err := checkJobGraph(ids, deps); err != nil {
		return err
	}
	if len(jobs) == 0 {
		return problem("required: a pipeline without jobs fails with update_build")
	}
	return nil
}

// BuildCanceled: a user asked to cancel the build (build.canceled); it
// ends with build.finished.
type BuildCanceled struct {
	User string `json:"user,omitempty"`
}

func (BuildCanceled) MessageType() string { return TypeBuildCanceled }

func (m BuildCanceled) Validate() error {
	return validate(TypeBuildCanceled, field("user", checkUser(m.User)))
}

// BuildFinished: the build ended (build.finished).
type BuildFinished struct {
	Status BuildStatus `json:"status"`          // success, failure, canceled or error
	Error  string      `json:"error,omitempty"` // why it failed before or outside its jobs
}

func (BuildFinished) MessageType() string { return TypeBuildFinished }

func (m BuildFinished) Validate() error {
	return validate(TypeBuildFinished,
		field("status", checkFinal(m.Status)),
		field("error", checkText(m.Error, MaxBuildError, true)),
	)
}

// JobPending: the job waits, for the reason given: a dependency, a
// runner with matching labels, a free runner... (job.pending). The
// scheduler publishes it whenever the reason changes.
type JobPending struct {
	Reason string `json:"reason"`
}

func (JobPending) MessageType() string { return TypeJobPending }

func (m JobPending) Validate() error {
	return validate(TypeJobPending, field("reason", all(nonEmpty(m.Reason), checkReason(m.Reason))))
}

// JobQueued: the job is ready and waits for a runner (job.queued).
type JobQueued struct {
	Attempt int `json:"attempt"` // 1, then 2... for retries
}

func (JobQueued) MessageType() string { return TypeJobQueued }

func (m JobQueued) Validate() error {
	return validate(TypeJobQueued, field("attempt", checkAttempt(m.Attempt)))
}

// JobBlocked: a manual job waits for approval (job.blocked).
type JobBlocked struct {
	Reason string `json:"reason"`
}

func (JobBlocked) MessageType() string { return TypeJobBlocked }

func (m JobBlocked) Validate() error {
	return validate(TypeJobBlocked, field("reason", all(nonEmpty(m.Reason), checkReason(m.Reason))))
}

// JobApproved: a user approved a blocked job (job.approved).
type JobApproved struct {
	User string `json:"user,omitempty"`
}

func (JobApproved) MessageType() string { return TypeJobApproved }

func (m JobApproved) Validate() error {
	return validate(TypeJobApproved, field("user", checkUser(m.User)))
}

// JobStarted: a runner took the job (job.started).
type JobStarted struct {
	RunnerID string `json:"runner_id"`
	Attempt  int    `json:"attempt"`
	// LeaseID is the lease the runner holds the job under: the data
	// store gives the job's secrets only to a request that shows it.
	LeaseID ID `json:"lease_id,omitzero"`
}

func (JobStarted) MessageType() string { return TypeJobStarted }

func (m JobStarted) Validate() error {
	return validate(TypeJobStarted,
		field("runner_id", checkRunnerID(m.RunnerID)),
		field("attempt", checkAttempt(m.Attempt)),
	)
}

// JobFinished: an attempt of the job ended (job.finished).
type JobFinished struct {
	Status     JobStatus `json:"status"`              // success, failure, canceled or error
	ExitCode   *int      `json:"exit_code,omitempty"` // absent if the script did not exit by itself
	Reason     string    `json:"reason,omitempty"`    // e.g. "timeout after 10m0s"
	Attempt    int       `json:"attempt"`             // 0 if it never reached a runner (canceled while pending, error)
	DurationMs int64     `json:"duration_ms"`
}

func (JobFinished) MessageType() string { return TypeJobFinished }

func (m JobFinished) Validate() error {
	return validate(TypeJobFinished,
		field("status", m.Status.checkResult()),
		field("exit_code", checkExitCode(m.ExitCode)),
		field("reason", checkReason(m.Reason)),
		field("attempt", between(m.Attempt, 0, maxAttempts)),
		field("duration_ms", nonNegative(m.DurationMs)),
	)
}

// JobSkipped: the job will not run (job.skipped).
type JobSkipped struct {
	Reason string `json:"reason"` // e.g. "dependency test failed", "inputs unchanged since build 12"
}

func (JobSkipped) MessageType() string { return TypeJobSkipped }

func (m JobSkipped) Validate() error {
	return validate(TypeJobSkipped, field("reason", all(nonEmpty(m.Reason), checkReason(m.Reason))))
}

// LogClosed: a job's log is complete and stored (log.closed).
type LogClosed struct {
	Lines     int64  `json:"lines"`
	Bytes     int64  `json:"bytes"`
	BlobKey   string `json:"blob_key"`            // where the blob store keeps it
	Truncated bool   `json:"truncated,omitempty"` // lines past the log size limit were dropped
}

func (LogClosed) MessageType() string { return TypeLogClosed }

func (m LogClosed) Validate() error {
	return validate(TypeLogClosed,
		field("lines", nonNegative(m.Lines)),
		field("bytes", nonNegative(m.Bytes)),
		field("blob_key", checkBlobKey(m.BlobKey)),
	)
}

// SecretSet: a repo secret was set (secret.set). It carries the name and
// the value sealed by the data store (see Sealed), never the value itself.
type SecretSet struct {
	Name  string `json:"name"`
	Value Sealed `json:"value"`
}

func (SecretSet) MessageType() string { return TypeSecretSet }

func (m SecretSet) Validate() error {
	return validate(TypeSecretSet,
		field("name", checkEnvName(m.Name)),
		field("value", checkSealed(m.Value)),
	)
}

// TokenCreated: an API token was created (token.created). It carries the
// name, scope and TokenHash of the token, never the token: the hash of a
// random 256-bit token can neither be reversed nor used to authenticate
// (the api hashes what it is shown), and the data store rebuilds its
// token table from it.
type TokenCreated struct {
	Name  string     `json:"name"`
	Scope TokenScope `json:"scope"`
	Hash  string     `json:"hash"`
}

func (TokenCreated) MessageType() string { return TypeTokenCreated }

func (m TokenCreated) Validate() error {
	return validate(TypeTokenCreated,
		field("name", checkRepoName(m.Name)),
		field("scope", m.Scope.check()),
		field("hash", checkSHA256(m.Hash)),
	)
}
