package contracts

import "encoding/base64"

import "fmt"

// BuildStatus is a build's status (SPEC.md §4):
// queued → running → success | failure | canceled | error.
type BuildStatus string

const (
	BuildStatusQueued   BuildStatus = "queued"
	BuildStatusRunning  BuildStatus = "running"
	BuildStatusSuccess  BuildStatus = "success"
	BuildStatusFailure  BuildStatus = "failure"
	BuildStatusCanceled BuildStatus = "canceled"
	BuildStatusError    BuildStatus = "error" // the build failed before or outside its jobs, e.g. an invalid pipeline file
)

const buildStatuses = "queued|running|success|failure|canceled|error"

// Valid reports whether s is one of the statuses above.
func (s BuildStatus) Valid() bool {
	switch s {
	case BuildStatusQueued, BuildStatusRunning, BuildStatusSuccess, BuildStatusFailure, BuildStatusCanceled, BuildStatusError:
		return true
	}
	return false
}

// Terminal reports whether a build in status s is over.
func (s BuildStatus) Terminal() bool {
	return s == BuildStatusSuccess || s == BuildStatusFailure || s == BuildStatusCanceled || s == BuildStatusError
}

func (s BuildStatus) check() error { return checkEnum(s.Valid(), string(s), buildStatuses) }

// JobStatus is a job's status (SPEC.md §4):
// pending → queued → running → success | failure | canceled | skipped |
// blocked, and error for infrastructure faults.
type JobStatus string

const (
	JobStatusPending  JobStatus = "pending"  // waiting for its dependencies
	JobStatusQueued   JobStatus = "queued"   // ready, waiting for a runner
	JobStatusRunning  JobStatus = "running"  // a runner holds its lease
	JobStatusSuccess  JobStatus = "success"  // exited 0
	JobStatusFailure  JobStatus = "failure"  // exited non-zero or timed out
	JobStatusCanceled JobStatus = "canceled" // canceled by a user
	JobStatusSkipped  JobStatus = "skipped"  // a dependency did not succeed, or its inputs are unchanged
	JobStatusBlocked  JobStatus = "blocked"  // manual: waiting for approve
	JobStatusError    JobStatus = "error"    // an infrastructure fault
)

const jobStatuses = "pending|queued|running|success|failure|canceled|skipped|blocked|error"

// Valid reports whether s is one of the statuses above.
func (s JobStatus) Valid() bool {
	switch s {
	case JobStatusPending, JobStatusQueued, JobStatusRunning, JobStatusSuccess, JobStatusFailure, JobStatusCanceled, JobStatusSkipped, JobStatusBlocked, JobStatusError:
		return true
	}
	return false
}

// Terminal reports whether a job in status s is over (blocked is not: it
// waits for approval).
func (s JobStatus) Terminal() bool {
	switch s {
	case JobStatusSuccess, JobStatusFailure, JobStatusCanceled, JobStatusSkipped, JobStatusError:
		return true
	}
	return false
}

func (s JobStatus) check() error { return checkEnum(s.Valid(), string(s), jobStatuses) }

// checkResult accepts the statuses a job can end with when it ran.
func (s JobStatus) checkResult() error {
	const results = "success|failure|canceled|error"
	return checkEnum(s == JobStatusSuccess || s == JobStatusFailure || s == JobStatusCanceled || s == JobStatusError, string(s), results)
}

// TriggerKind says what triggered a build (the pipeline's when.event).
type TriggerKind string

const (
	TriggerPush    TriggerKind = "push"    // a push seen by polling or a push webhook
	TriggerManual  TriggerKind = "manual"  // a user: API, CLI or UI (also retries)
	TriggerWebhook TriggerKind = "webhook" // a webhook that is not a push
)

// Valid reports whether k is one of the kinds above.
func (k TriggerKind) Valid() bool {
	return k == TriggerPush || k == TriggerManual || k == TriggerWebhook
}

func (k TriggerKind) check() error { return checkEnum(k.Valid(), string(k), "push|manual|webhook") }

// TokenScope is what an API token may do.
type TokenScope string

const (
	ScopeRead  TokenScope = "read"
	ScopeWrite TokenScope = "write"
	ScopeAdmin TokenScope = "admin"
)

// Valid reports whether s is one of the scopes above.
func (s TokenScope) Valid() bool { return s == ScopeRead || s == ScopeWrite || s == ScopeAdmin }

func (s TokenScope) check() error { return checkEnum(s.Valid(), string(s), "read|write|admin") }

// Stream is the output stream a log line came from.
type Stream string

const (
	StreamStdout Stream = "stdout"
	StreamStderr Stream = "stderr"
)

// Valid reports whether s is one of the streams above.
func (s Stream) Valid() bool { return s == StreamStdout || s == StreamStderr }

func (s Stream) check() error { return checkEnum(s.Valid(), string(s), "stdout|stderr") }

// Executor is how a runner runs jobs.
type Executor string

const (
	ExecutorShell     Executor = "shell"
	ExecutorContainer Executor = "container"
)

// Valid reports whether e is one of the executors above.
func (e Executor) Valid() bool { return e == ExecutorShell || e == ExecutorContainer }

func (e Executor) check() error { return checkEnum(e.Valid(), string(e), "shell|container") }

// JobRef names one job of one build.
type JobRef struct {
	Repo  string `json:"repo"`
	Build int64  `json:"build"` // the build's number in the repo
	Job   string `json:"job"`   // the job's name in the pipeline
}

// String returns "repo#build/job".
func (r JobRef) String() string { return fmt.Sprintf("%s#%d/%s", r.Repo, r.Build, r.Job) }

func (r JobRef) check() error {
	return all(
		field("repo", checkRepoName(r.Repo)),
		field("build", checkBuildNumber(r.Build)),
		field("job", checkJobName(r.Job)),
	)
}

// Secret is a secret value: a repo secret, a webhook secret, a value to
// mask. JSON carries it as a plain string, but fmt prints "[redacted]"
// (%v, %s, %q, %#v), so a Secret does not leak into logs by accident.
// Loggers that serialise values as JSON (zerolog's Interface) still see it:
// never log a message that holds one.
type Secret string

// String returns "[redacted]".
func (Secret) String() string { return "[redacted]" }

// GoString returns `"[redacted]"`.
func (Secret) GoString() string { return `"[redacted]"` }

// checkSecret checks a secret value without ever quoting it.
func checkSecret(s Secret) error {
	switch {
	case s == "":
		return problem("required")
	case len(s) > MaxSecretLen:
		return problem("%d bytes, max %d", len(s), MaxSecretLen)
	}
	if err := checkText(string(s), MaxSecretLen, true); err != nil {
		return problem("must be valid UTF-8 without control characters other than tab and newlines")
	}
	return nil
}

// MaxSealed bounds a Sealed value: a secret of up to MaxSecretLen bytes
// with its nonce and tag, base64-encoded.
const MaxSealed = 2*MaxSecretLen + 256

// Sealed is a secret encrypted by the data store (AES-256-GCM under the
// data store's key, which never leaves it), standard base64 of nonce ||
// ciphertext || tag. Events carry secrets only sealed, so the event log
// can rebuild the data store's secret tables without holding a readable
// secret; only the data store can open one.
type Sealed string

func checkSealed(s Sealed) error {
	switch {
	case s == "":
		return problem("required")
	case len(s) > MaxSealed:
		return problem("%d bytes, max %d", len(s), MaxSealed)
	}
	raw, err := base64.StdEncoding.DecodeString(string(s))
	if err != nil {
		return problem("not standard base64")
	}
	if len(raw) < sealedOverhead {
		return problem("%d bytes sealed, want at least %d (nonce and tag)", len(raw), sealedOverhead)
	}
	return nil
}

// sealedOverhead is AES-GCM's nonce and tag.
const sealedOverhead = 12 + 16

func optSealed(s Sealed) error {
	if s == "" {
		return nil
	}
	return checkSealed(s)
}
