package contracts

import "time"

// Job dispatch messages (service ServiceDispatch, served by the scheduler;
// the jobs module's runners call it).
//
// Call order for a runner: dispatch.hello once (and again after a
// CodeNotFound, which means the scheduler forgot the runner), then
// dispatch.request_work in a loop (long-polling with WaitMs). Each
// Assignment is a lease on one attempt of one job: the runner renews it
// (dispatch.renew) every Welcome.HeartbeatMs until it sends
// dispatch.report_result. Every dispatch.request_work lists the leases the
// runner holds (Held): an assignment recorded for the runner that it does
// not hold was lost on its way (the scheduler restarted, or the answer
// came after the runner stopped waiting), and the scheduler sends it again
// with the same lease and attempt. A runner that is sent a lease it
// already started (in this process or, judging by its workspaces, an
// earlier one) hands it back with JobResult.Requeue instead of running the
// attempt twice. A lease that is not renewed by its Deadline is lost:
// the scheduler gives the job to another runner or fails it, and later
// renewals and results for that lease get CodeConflict. A renewal whose
// Lease has Cancel set, or a dispatch.cancel published on
// CancelTopic(runner id), tells the runner to stop the job (killing its
// process group) and report it canceled.
const (
	TypeRunnerHello = "dispatch.hello"
	TypeRequestWork = "dispatch.request_work"
	TypeRenewLease  = "dispatch.renew"
	TypeJobResult   = "dispatch.report_result"
	TypeCancelJob   = "dispatch.cancel" // published on CancelTopic(runner id)
	TypeGetStats    = "dispatch.get_stats"
	TypeStats       = "dispatch.stats"
	TypeWelcome     = "dispatch.welcome"
	TypeWork        = "dispatch.work"
	TypeLease       = "dispatch.lease"
)

const (
	maxCapacity   = 1024
	maxScriptLine = 64 << 10
	maxScript     = 1000
	maxCacheKey   = 256
	maxTimeoutMs  = 7 * 24 * 3600 * 1000
	maxLeaseMs    = 3600 * 1000
	maxVersionLen = 64
)

// RunnerHello introduces a runner (dispatch.hello → dispatch.welcome).
type RunnerHello struct {
	RunnerID string            `json:"runner_id"` // unique among live runners, stable across restarts
	Capacity int               `json:"capacity"`  // jobs it runs at once
	Labels   map[string]string `json:"labels,omitempty"`
	Executor Executor          `json:"executor"`
	Version  string            `json:"version,omitempty"` // the zeroci version it runs
}

func (RunnerHello) MessageType() string { return TypeRunnerHello }

func (m RunnerHello) Validate() error {
	return validate(TypeRunnerHello,
		field("runner_id", checkRunnerID(m.RunnerID)),
		field("capacity", between(m.Capacity, 1, maxCapacity)),
		field("labels", checkLabels(m.Labels)),
		field("executor", m.Executor.check()),
		field("version", checkText(m.Version, maxVersionLen, false)),
	)
}

// Welcome answers RunnerHello (dispatch.welcome) with the scheduler's
// timing.
type Welcome struct {
	LeaseMs     int64 `json:"lease_ms"`     // how long a lease lasts after each renewal
	HeartbeatMs int64 `json:"heartbeat_ms"` // how often to renew; less than LeaseMs
}

func (Welcome) MessageType() string { return TypeWelcome }

func (m Welcome) Validate() error {
	var heartbeat error
	if m.HeartbeatMs >= m.LeaseMs {
		heartbeat = problem("%d, want less than lease_ms %d", m.HeartbeatMs, m.LeaseMs)
	}
	return validate(TypeWelcome,
		field("lease_ms", between(m.LeaseMs, 1000, maxLeaseMs)),
		field("heartbeat_ms", all(between(m.HeartbeatMs, 100, maxLeaseMs), heartbeat)),
	)
}

// RequestWork asks for up to Free jobs (dispatch.request_work →
// dispatch.work), waiting up to WaitMs when there are none.
type RequestWork struct {
	RunnerID string `json:"runner_id"`
	Free     int    `json:"free"` // free slots
	WaitMs   int64  `json:"wait_ms,omitempty"`
	// Held lists the leases the runner holds: running, or reporting their
	// result. Assignments recorded for the runner and missing here are sent
	// again.
	Held []ID `json:"held,omitempty"`
}

func (RequestWork) MessageType() string { return TypeRequestWork }

func (m RequestWork) Validate() error {
	return validate(TypeRequestWork,
		field("runner_id", checkRunnerID(m.RunnerID)),
		field("free", between(m.Free, 1, maxCapacity)),
		field("wait_ms", checkWait(m.WaitMs)),
		field("held", checkIDSet(m.Held)),
	)
}

// checkIDSet checks a list of distinct IDs, at most maxCapacity.
func checkIDSet(ids []ID) error {
	seen := make(map[ID]bool, len(ids))
	return each(ids, maxCapacity, func(id ID) error {
		if seen[id] {
			return problem("duplicate %s", id)
		}
		seen[id] = true
		return checkID(id)
	})
}

// Work answers RequestWork (dispatch.work); no assignments means no work.
type Work struct {
	Assignments []Assignment `json:"assignments"`
}

func (Work) MessageType() string { return TypeWork }

func (m Work) Validate() error {
	seen := make(map[ID]bool, len(m.Assignments))
	work := each(m.Assignments, maxCapacity, func(a Assignment) error {
		if err := a.check(); err != nil {
			return err
		}
		if seen[a.LeaseID] {
			return field("lease_id", problem("duplicate %s", a.LeaseID))
		}
		seen[a.LeaseID] = true
		return nil
	})
	return validate(TypeWork, field("assignments", work))
}

// Assignment is a lease on one attempt of one job.
type Assignment struct {
	LeaseID     ID        `json:"lease_id"`
	Deadline    time.Time `json:"deadline"` // the lease is lost unless renewed by then
	Attempt     int       `json:"attempt"`
	MaxAttempts int       `json:"max_attempts"` // 1 + the job's retries; the last attempt closes the log
	Job         JobSpec   `json:"job"`
}

func (a Assignment) check() error {
	var max error
	if a.MaxAttempts < a.Attempt {
		max = problem("%d, less than attempt %d", a.MaxAttempts, a.Attempt)
	}
	return all(
		field("lease_id", checkID(a.LeaseID)),
		field("deadline", checkTime(a.Deadline)),
		field("attempt", checkAttempt(a.Attempt)),
		field("max_attempts", all(checkAttempt(a.MaxAttempts), max)),
		field("job", a.Job.check()),
	)
}

// JobSpec is what a runner needs to run a job. The runner adds
// ZEROCI_REPO, ZEROCI_BUILD_NUMBER, ZEROCI_COMMIT, ZEROCI_REF and
// ZEROCI_JOB to the environment.
type JobSpec struct {
	Job    JobRef `json:"job"`
	URL    string `json:"url"`    // the repository to clone
	Ref    string `json:"ref"`    // the build's ref
	Commit string `json:"commit"` // the full commit id to check out
	// Script is run with `sh -e` in the workspace, one entry after another.
	Script []string          `json:"script"`
	Env    map[string]string `json:"env,omitempty"` // pipeline and job environment, merged
	// SecretEnv maps environment variable names to secret names; the
	// runner reads the values with datastore.get_job_secrets and registers
	// them for masking with logging.open.
	SecretEnv        map[string]string `json:"secret_env,omitempty"`
	Image            string            `json:"image,omitempty"` // container image, for the container executor
	TimeoutMs        int64             `json:"timeout_ms"`
	Caches           []CacheSpec       `json:"caches,omitempty"`
	Artifacts        []ArtifactSpec    `json:"artifacts,omitempty"`
	RestoreArtifacts []string          `json:"restore_artifacts,omitempty"` // artifact ids of dependencies to unpack first
}

// CacheSpec is a directory set kept between builds under a key.
type CacheSpec struct {
	ID    string   `json:"id"`
	Key   string   `json:"key"`   // a template the runner expands, e.g. `go-{{ checksum "go.sum" }}`
	Paths []string `json:"paths"` // relative to the workspace
}

// ArtifactSpec is a set of files kept after the job.
type ArtifactSpec struct {
	ID    string   `json:"id"`
	Paths []string `json:"paths"` // relative to the workspace
}

func (s JobSpec) check() error {
	var overlap error
	for k := range s.SecretEnv {
		if _, ok := s.Env[k]; ok {
			overlap = problem("%s is also in env", quote(k))
			break
		}
	}
	script := each(s.Script, maxScript, func(line string) error {
		return all(nonEmpty(line), checkText(line, maxScriptLine, true))
	})
	if script == nil && len(s.Script) == 0 {
		script = problem("required")
	}
	return all(
		field("job", s.Job.check()),
		field("url", checkURL(s.URL)),
		field("ref", checkRef(s.Ref)),
		field("commit", checkCommit(s.Commit)),
		field("script", script),
		field("env", checkEnv(s.Env)),
		field("secret_env", all(eachEntry(s.SecretEnv, MaxEnv, func(k, v string) error {
			return all(checkEnvName(k), checkEnvName(v))
		}), overlap)),
		field("image", opt(s.Image, checkImage)),
		field("timeout_ms", between(s.TimeoutMs, 1, maxTimeoutMs)),
		field("caches", uniqueIDs(s.Caches, func(c CacheSpec) string { return c.ID }, CacheSpec.check)),
		field("artifacts", uniqueIDs(s.Artifacts, func(a ArtifactSpec) string { return a.ID }, ArtifactSpec.check)),
		field("restore_artifacts", unique(s.RestoreArtifacts, maxNamesList, checkJobName)),
	)
}

func (c CacheSpec) check() error {
	return all(
		field("id", checkJobName(c.ID)),
		field("key", all(nonEmpty(c.Key), checkText(c.Key, maxCacheKey, false))),
		field("paths", checkPaths(c.Paths)),
	)
}

func (a ArtifactSpec) check() error {
	return all(
		field("id", checkJobName(a.ID)),
		field("paths", checkPaths(a.Paths)),
	)
}

func checkPaths(paths []string) error {
	if len(paths) == 0 {
		return problem("required")
	}
	return unique(paths, maxPaths, checkWorkspacePath)
}

// uniqueIDs checks each element of s and that their ids are distinct.
func uniqueIDs[T any](s []T, id func(T) string, check func(T) error) error {
	seen := make(map[string]bool, len(s))
	return each(s, maxNamesList, func(v T) error {
		if err := check(v); err != nil {
			return err
		}
		if seen[id(v)] {
			return field("id", problem("duplicate %s", quote(id(v))))
		}
		seen[id(v)] = true
		return nil
	})
}

// RenewLease extends a lease (dispatch.renew → dispatch.lease).
type RenewLease struct {
	RunnerID string `json:"runner_id"`
	LeaseID  ID     `json:"lease_id"`
}

func (RenewLease) MessageType() string { return TypeRenewLease }

func (m RenewLease) Validate() error {
	return validate(TypeRenewLease,
		field("runner_id", checkRunnerID(m.RunnerID)),
		field("lease_id", checkID(m.LeaseID)),
	)
}

// Lease answers RenewLease (dispatch.lease).
type Lease struct {
	LeaseID  ID        `json:"lease_id"`
	Deadline time.Time `json:"deadline"`
	Cancel   bool      `json:"cancel,omitempty"` // stop the job and report it canceled
	Reason   string    `json:"reason,omitempty"` // why, when Cancel is set
}

func (Lease) MessageType() string { return TypeLease }

func (m Lease) Validate() error {
	var reason error
	if m.Reason != "" && !m.Cancel {
		reason = problem("set without cancel")
	}
	return validate(TypeLease,
		field("lease_id", checkID(m.LeaseID)),
		field("deadline", checkTime(m.Deadline)),
		field("reason", all(checkReason(m.Reason), reason)),
	)
}

// JobResult reports how an attempt ended and releases its lease
// (dispatch.report_result → reply.ok). Sending it twice is harmless.
type JobResult struct {
	RunnerID   string    `json:"runner_id"`
	LeaseID    ID        `json:"lease_id"`
	Job        JobRef    `json:"job"`
	Attempt    int       `json:"attempt"`
	Status     JobStatus `json:"status"`              // success, failure, canceled or error
	ExitCode   *int      `json:"exit_code,omitempty"` // absent if the script did not exit by itself
	Reason     string    `json:"reason,omitempty"`    // e.g. "timeout after 10m0s", "image not found"
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Requeue hands the job back unfinished (status error): the runner is
	// stopping and did not finish it in time. The scheduler runs it again
	// elsewhere as a new attempt that does not count against its retries.
	Requeue bool `json:"requeue,omitempty"`
}

func (JobResult) MessageType() string { return TypeJobResult }

func (m JobResult) Validate() error {
	var exit error
	if m.Status == JobStatusSuccess && m.ExitCode != nil && *m.ExitCode != 0 {
		exit = problem("%d with status success", *m.ExitCode)
	}
	var requeue error
	if m.Requeue && m.Status != JobStatusError {
		requeue = problem("with status %s, want error", m.Status)
	}
	return validate(TypeJobResult,
		field("runner_id", checkRunnerID(m.RunnerID)),
		field("requeue", requeue),
		field("lease_id", checkID(m.LeaseID)),
		field("job", m.Job.check()),
		field("attempt", checkAttempt(m.Attempt)),
		field("status", m.Status.checkResult()),
		field("exit_code", all(checkExitCode(m.ExitCode), exit)),
		field("reason", checkReason(m.Reason)),
		field("started_at", checkTime(m.StartedAt)),
		field("finished_at", all(checkTime(m.FinishedAt), checkOrder(m.StartedAt, m.FinishedAt))),
	)
}

// CancelJob tells a runner to stop a job (dispatch.cancel, published on
// CancelTopic(RunnerID)). Publications can be dropped, so the scheduler
// also sets Lease.Cancel on the job's next renewal.
type CancelJob struct {
	RunnerID string `json:"runner_id"`
	LeaseID  ID     `json:"lease_id"`
	Job      JobRef `json:"job"`
	Reason   string `json:"reason,omitempty"`
}

func (CancelJob) MessageType() string { return TypeCancelJob }

func (m CancelJob) Validate() error {
	return validate(TypeCancelJob,
		field("runner_id", checkRunnerID(m.RunnerID)),
		field("lease_id", checkID(m.LeaseID)),
		field("job", m.Job.check()),
		field("reason", checkReason(m.Reason)),
	)
}

// GetStats asks the scheduler for its queue and runners, for metrics
// (dispatch.get_stats → dispatch.stats).
type GetStats struct{}

func (GetStats) MessageType() string { return TypeGetStats }

func (GetStats) Validate() error { return nil }

// Stats answers GetStats (dispatch.stats).
type Stats struct {
	Queued  int `json:"queued"`  // jobs waiting for a runner
	Running int `json:"running"` // jobs under a lease
	Runners int `json:"runners"` // runners heard from within the lease time
	Builds  int `json:"builds"`  // unfinished builds
}

func (Stats) MessageType() string { return TypeStats }

func (m Stats) Validate() error {
	return validate(TypeStats,
		field("queued", nonNegative(m.Queued)),
		field("running", nonNegative(m.Running)),
		field("runners", nonNegative(m.Runners)),
		field("builds", nonNegative(m.Builds)),
	)
}
