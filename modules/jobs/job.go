//go:build unix

package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/jobs/executor"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/rpc"
)

// Why a job was stopped before its end: the cause of its ctx.
var (
	// errHandBack: the runner is stopping; the job is reported with status
	// error and requeue.
	errHandBack = errors.New("jobs: runner stopping")
	// errLeaseLost: the scheduler no longer holds the lease (renew said
	// conflict or not found, or its deadline passed); nothing is reported.
	errLeaseLost = errors.New("jobs: lease lost")
)

// cancelCause is a cancel from the scheduler (Lease.Cancel or
// dispatch.cancel); the job is reported canceled with its reason.
type cancelCause struct{ reason string }

func (c *cancelCause) Error() string { return "jobs: canceled: " + c.reason }

func canceled(reason string) error {
	if reason == "" {
		reason = "canceled"
	}
	return &cancelCause{reason: reason}
}

// outcome is how an attempt ended.
type outcome struct {
	status  contracts.JobStatus
	exit    *int
	reason  string
	requeue bool
	lost    bool // the lease is gone: report nothing
}

func failed(status contracts.JobStatus, format string, args ...any) outcome {
	return outcome{status: status, reason: fmt.Sprintf(format, args...)}
}

// job is one assignment being run.
type job struct {
	r       *Runner
	a       contracts.Assignment
	spec    contracts.JobSpec
	log     zerolog.Logger
	started time.Time
	dir     string // the workspace

	ctx    context.Context // preparation and script; ended by stop
	cancel context.CancelCauseFunc

	w       *logclient.Writer  // nil until the log is open
	wcancel context.CancelFunc // ends w's ctx
}

func (r *Runner) newJob(a contracts.Assignment) *job {
	ctx, cancel := context.WithCancelCause(r.ctx)
	return &job{
		r: r, a: a, spec: a.Job,
		log:     r.log.With().Str("job", a.Job.Job.String()).Int("attempt", a.Attempt).Str("lease", a.LeaseID.String()).Logger(),
		started: time.Now().UTC(),
		dir:     filepath.Join(r.workDir, a.LeaseID.String()),
		ctx:     ctx, cancel: cancel,
	}
}

// stop stops the job with cause; the first cause wins.
func (j *job) stop(cause error) { j.cancel(cause) }

// run runs the attempt to its end and reports it, renewing the lease
// until the report is sent.
func (j *job) run() {
	defer j.r.jobs.Done()
	defer j.r.release(j)
	defer j.cancel(nil)
	renewCtx, stopRenew := context.WithCancel(j.r.ctx)
	var renewing sync.WaitGroup
	renewing.Add(1)
	go func() { defer renewing.Done(); j.renew(renewCtx) }()

	j.log.Info().Msg("job started")
	out := j.execute()
	out, seal := j.finishLog(out)
	if out.lost {
		j.log.Warn().Msg("lease lost; job stopped without a report")
	} else {
		j.r.report(j.r.ctx, j.result(out))
		j.log.Info().Str("status", string(out.status)).Str("reason", out.reason).Msg("job ended")
	}
	if seal {
		j.sealLog()
	}
	stopRenew()
	renewing.Wait()
	if err := os.RemoveAll(j.dir); err != nil {
		j.log.Warn().Err(err).Msg("removing the workspace")
	}
}

// result is the report of out.
func (j *job) result(out outcome) contracts.JobResult {
	finished := time.Now().UTC()
	if finished.Before(j.started) {
		finished = j.started
	}
	return contracts.JobResult{
		RunnerID: j.r.id, LeaseID: j.a.LeaseID, Job: j.spec.Job, Attempt: j.a.Attempt,
		Status: out.status, ExitCode: out.exit, Reason: cleanReason(out.reason),
		StartedAt: j.started, FinishedAt: finished, Requeue: out.requeue,
	}
}

// interrupted is the outcome of a job whose ctx ended, by its cause.
func (j *job) interrupted() outcome {
	var c *cancelCause
	switch cause := context.Cause(j.ctx); {
	case errors.As(cause, &c):
		return outcome{status: contracts.JobStatusCanceled, reason: c.reason}
	case errors.Is(cause, errLeaseLost):
		return outcome{status: contracts.JobStatusError, reason: "lease lost", lost: true}
	default: // errHandBack, or the runner's ctx ended
		return outcome{status: contracts.JobStatusError, requeue: true,
			reason: "runner " + j.r.id + " stopped before the job finished; handed back"}
	}
}

// note writes a runner line to the job's log (and the runner's log).
func (j *job) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	j.log.Info().Msg(msg)
	if j.w != nil {
		_ = j.w.Line(contracts.StreamStderr, "zeroci: "+msg)
	}
}

// execute prepares the workspace, runs the script and saves what it made.
func (j *job) execute() outcome {
	if err := os.Mkdir(j.dir, 0o755); err != nil {
		return failed(contracts.JobStatusError, "runner %s: workspace: %v", j.r.id, err)
	}
	env, masks, secretErr := j.secrets()
	if j.ctx.Err() != nil {
		return j.interrupted()
	}
	if err := j.openLog(masks); err != nil {
		if j.ctx.Err() != nil {
			return j.interrupted()
		}
		return failed(contracts.JobStatusError, "log: %v", err)
	}
	if secretErr != nil {
		j.note("%v", secretErr)
		return j.stepOutcome(secretErr)
	}
	ex, refusal := j.executor()
	if refusal != "" {
		j.note("%s", refusal)
		return failed(contracts.JobStatusError, "%s", refusal)
	}
	if err := j.prepare(); err != nil {
		j.note("%v", err)
		return j.stepOutcome(err)
	}
	caches := j.restoreCaches()
	if j.ctx.Err() != nil {
		return j.interrupted()
	}
	out := j.script(ex, env)
	if out.status != contracts.JobStatusSuccess {
		return out
	}
	if err := j.saveArtifacts(); err != nil {
		j.note("%v", err)
		var missing *missingPathError
		if errors.As(err, &missing) {
			return outcome{status: contracts.JobStatusFailure, exit: out.exit, reason: err.Error()}
		}
		return j.stepOutcome(err)
	}
	j.saveCaches(caches)
	return out
}

// stepOutcome is the outcome of a failed preparation or saving step: the
// job's interruption if its ctx ended, an infrastructure error otherwise.
func (j *job) stepOutcome(err error) outcome {
	if j.ctx.Err() != nil {
		return j.interrupted()
	}
	return failed(contracts.JobStatusError, "%v", err)
}

// prepare extracts the source and the restored artifacts.
func (j *job) prepare() error {
	src, err := j.r.sources.open(j.ctx, contracts.SourceKey(j.spec.Job.Repo, j.spec.Commit))
	if err == nil {
		err = extractTar(src, j.dir)
		src.Close()
	}
	if err != nil {
		return fmt.Errorf("source of commit %s: %w", j.spec.Commit, err)
	}
	for _, id := range j.spec.RestoreArtifacts {
		key := contracts.ArtifactKey(j.spec.Job.Repo, j.spec.Job.Build, id)
		if err := j.fetchExtract(key); err != nil {
			if contracts.CodeOf(err) == contracts.CodeNotFound {
				return fmt.Errorf("restoring artifact %s failed: build %d has no artifact %s", id, j.spec.Job.Build, id)
			}
			return fmt.Errorf("restoring artifact %s failed: %w", id, err)
		}
		j.note("restored artifact %s", id)
	}
	return nil
}

// executor picks the executor for the job, or says why it is refused.
func (j *job) executor() (executor.Executor, string) {
	if j.spec.Image == "" || j.r.opts.Executor != ExecutorContainer {
		return j.r.shell, ""
	}
	if j.r.container == nil {
		return nil, fmt.Sprintf("runner %s has no container engine (%s): %v",
			j.r.id, strings.Join(executor.Engines, ", "), j.r.noEngine)
	}
	return j.r.container, ""
}

// script runs the job's script and classifies its end.
func (j *job) script(ex executor.Executor, env map[string]string) outcome {
	timeout := time.Duration(j.spec.TimeoutMs) * time.Millisecond
	res := ex.Run(j.ctx, executor.Spec{
		Script: j.spec.Script, Env: env, Dir: j.dir, Timeout: timeout, Image: j.spec.Image,
	}, func(s contracts.Stream, text string) { _ = j.w.Line(s, text) })
	switch {
	case res.Canceled || (j.ctx.Err() != nil && !res.Succeeded()):
		return j.interrupted()
	case res.TimedOut:
		j.note("timeout after %v: the job was stopped", timeout)
		return outcome{status: contracts.JobStatusFailure, reason: "timeout after " + timeout.String()}
	case res.Err != nil:
		j.note("%v", res.Err)
		return failed(contracts.JobStatusError, "%v", res.Err)
	case res.ExitCode == nil:
		return failed(contracts.JobStatusFailure, "killed by signal %v", res.Signal)
	case *res.ExitCode != 0:
		return outcome{status: contracts.JobStatusFailure, exit: res.ExitCode, reason: "exit code " + strconv.Itoa(*res.ExitCode)}
	}
	return outcome{status: contracts.JobStatusSuccess, exit: res.ExitCode}
}

// secrets reads the job's secrets and returns its environment and the
// values to mask.
func (j *job) secrets() (map[string]string, []contracts.Secret, error) {
	env := make(map[string]string, len(j.spec.Env)+len(j.spec.SecretEnv)+5)
	for k, v := range j.spec.Env {
		env[k] = v
	}
	ref := j.spec.Job
	env["ZEROCI_REPO"] = ref.Repo
	env["ZEROCI_BUILD_NUMBER"] = strconv.FormatInt(ref.Build, 10)
	env["ZEROCI_COMMIT"] = j.spec.Commit
	env["ZEROCI_REF"] = j.spec.Ref
	env["ZEROCI_JOB"] = ref.Job
	env[leaseEnv] = j.a.LeaseID.String()
	if len(j.spec.SecretEnv) == 0 {
		return env, nil, nil
	}
	var names []string
	for _, name := range j.spec.SecretEnv {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	ctx, cancel := context.WithTimeout(j.ctx, callTimeout)
	defer cancel()
	got, err := rpc.Call[contracts.JobSecrets](ctx, j.r.tr, contracts.GetJobSecrets{Job: ref, LeaseID: j.a.LeaseID, Names: names})
	if err != nil {
		return env, nil, fmt.Errorf("reading secrets %s failed: %w", strings.Join(names, ", "), err)
	}
	masks := make([]contracts.Secret, 0, len(names))
	for _, name := range names {
		v, ok := got.Values[name]
		if !ok {
			return env, nil, fmt.Errorf("secret %s is not set for repository %s", name, ref.Repo)
		}
		masks = append(masks, v)
	}
	for k, name := range j.spec.SecretEnv {
		env[k] = string(got.Values[name])
	}
	return env, masks, nil
}

// openLog opens the attempt's log. The Writer lives with the runner, not
// the job (a stopped job still writes its last lines), but opening gives
// up when the job is stopped.
func (j *job) openLog(masks []contracts.Secret) error {
	wctx, wcancel := context.WithCancel(j.r.ctx)
	stopAfter := context.AfterFunc(j.ctx, wcancel)
	w, err := logclient.NewWriter(wctx, j.r.tr, j.spec.Job, j.a.Attempt, masks, logclient.WriterOptions{})
	if !stopAfter() || err != nil {
		wcancel()
		if err == nil {
			_ = w.Finish(j.r.ctx)
			return j.ctx.Err()
		}
		return err
	}
	j.w = w
	j.wcancel = wcancel
	return nil
}

// finishLog ends the attempt's output: every line is stored before the
// job's end is reported. seal says the log is then closed (sealed): no
// other attempt follows (not a failure with attempts left, a lost lease or
// a job handed back). The close comes after the report, so a runner that
// dies between the two leaves a log its job's next attempt can still
// write, not a closed one; the scheduler closes the log of a job whose end
// it recorded in case the runner never does. A log that cannot be
// finished turns a success or failure into an error.
func (j *job) finishLog(out outcome) (outcome, bool) {
	if j.w == nil {
		return out, false
	}
	ctx, cancel := context.WithTimeout(j.r.ctx, logCloseTimeout)
	defer cancel()
	if err := j.w.Finish(ctx); err != nil {
		j.log.Error().Err(err).Msg("finishing the log")
		j.wcancel()
		if out.status == contracts.JobStatusSuccess || out.status == contracts.JobStatusFailure {
			out = failed(contracts.JobStatusError, "log: %v", err)
		}
		return out, false
	}
	more := out.lost || out.requeue || (out.status == contracts.JobStatusFailure && j.a.Attempt < j.a.MaxAttempts)
	if more {
		j.wcancel()
	}
	return out, !more
}

// sealLog closes the finished log (the scheduler may have done so already;
// closing twice is harmless).
func (j *job) sealLog() {
	defer j.wcancel()
	ctx, cancel := context.WithTimeout(j.r.ctx, logCloseTimeout)
	defer cancel()
	if _, err := j.w.Close(ctx); err != nil {
		j.log.Warn().Err(err).Msg("closing the log")
	}
}

// logCloseTimeout bounds finishing and closing a job's log.
const logCloseTimeout = time.Minute

// cleanReason makes s a valid JobResult.Reason: one line of valid UTF-8,
// at most 1000 bytes.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 1000 {
		c := 1000
		for c > 0 && !utf8.RuneStart(s[c]) {
			c--
		}
		s = s[:c] + "…"
	}
	return s
}
