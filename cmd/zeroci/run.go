package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/buildscript"
	"github.com/zeroci/zeroci/modules/buildscript/pipeline"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// localRepo is the repository name `zeroci run` builds under.
const localRepo = "local"

// newRunCmd returns `zeroci run` (SPEC.md §2).
func newRunCmd(log zerolog.Logger) *cobra.Command {
	var dir string
	var jobs, params, secrets []string
	cmd := &cobra.Command{
		Use:   "run [--dir DIR] [--job ID]... [--param K=V]...",
		Short: "Run a directory's pipeline locally, with no server",
		Long: `Run the pipeline of DIR (default: the current directory) as it is on disk,
committed or not (files its .gitignore ignores are left out), through the
same scheduler and runner as the server, all in this process with
temporary data. Job logs stream to stdout, each line prefixed with
"[JOB] "; the result of each job goes to stderr at the end.

--job runs only that job and what it depends on (repeatable); --param
sets a build parameter, given to every job as an environment variable;
--secret gives a secret the pipeline reads with {secret: NAME} (masked in
the output like on the server).
Manual jobs run without approval: running them locally is the approval.

Exit status: 0 when the build succeeded, 1 when it did not, 2 for a bad
command line or pipeline file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := parseParams(params)
			if err != nil {
				return err
			}
			ss, err := parseSecrets(secrets)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			r := &localRun{dir: dir, jobs: jobs, params: ps, secrets: ss, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), log: log}
			return r.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "the repository's directory")
	cmd.Flags().StringArrayVar(&jobs, "job", nil, "run only this job and its dependencies (repeatable)")
	cmd.Flags().StringArrayVar(&params, "param", nil, "a build parameter K=V (repeatable)")
	cmd.Flags().StringArrayVar(&secrets, "secret", nil, "a secret NAME=VALUE, or NAME to take the value from the environment variable NAME (repeatable)")
	return cmd
}

// parseParams reads --param K=V flags (parseKVs) and checks them as a
// trigger would, before anything starts.
func parseParams(kvs []string) (map[string]string, error) {
	out, err := parseKVs(kvs)
	if err != nil {
		return nil, err
	}
	if err := (contracts.TriggerBuild{Repo: localRepo, Ref: "main", Event: contracts.TriggerManual, Params: out}).Validate(); err != nil {
		return nil, usageError("run: --param: %v", err)
	}
	return out, nil
}

// parseSecrets reads --secret NAME=VALUE or NAME (value from $NAME).
func parseSecrets(specs []string) (map[string]string, error) {
	out := make(map[string]string, len(specs))
	for _, spec := range specs {
		name, value, ok := strings.Cut(spec, "=")
		if !ok {
			v, set := os.LookupEnv(name)
			if !set {
				return nil, fmt.Errorf("run: --secret %s: no =VALUE and no environment variable %s", name, name)
			}
			value = v
		}
		if err := (contracts.SetSecret{Repo: localRepo, Name: name, Value: contracts.Secret(value)}).Validate(); err != nil {
			return nil, fmt.Errorf("run: --secret %s: %w", name, err)
		}
		out[name] = value
	}
	return out, nil
}

// localRun is one `zeroci run`.
type localRun struct {
	dir         string
	jobs        []string
	params      map[string]string
	secrets     map[string]string
	out, errOut io.Writer
	log         zerolog.Logger

	outMu sync.Mutex
}

func (r *localRun) run(ctx context.Context) error {
	dir, err := filepath.Abs(r.dir)
	if err != nil {
		return runFailed(fmt.Errorf("run: %w", err))
	}
	file, err := pipeline.Find(dir)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("run: %w", err)}
	}
	p, err := pipeline.Load(file)
	var errs pipeline.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(r.errOut, e)
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("run: %s: %d %s", file, len(errs), plural(len(errs), "problem"))}
	}
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("run: %w", err)}
	}
	if len(r.jobs) > 0 {
		if _, err := p.Dependencies(r.jobs...); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("run: --job: %w", err)}
		}
	}

	tmp, err := os.MkdirTemp("", "zeroci-run-")
	if err != nil {
		return runFailed(fmt.Errorf("run: %w", err))
	}
	defer os.RemoveAll(tmp)
	gitDir := filepath.Join(tmp, "snapshot.git")
	branch, commit, err := snapshot(ctx, dir, gitDir)
	if err != nil {
		return runFailed(fmt.Errorf("run: snapshot of %s: %w", dir, err))
	}

	cfg := config.Default()
	cfg.DataDir = filepath.Join(tmp, "data")
	cfg.Jobs.Capacity = max(2, runtime.NumCPU())
	cfg.Buildscript.AllowLocal = true
	sched := buildscript.New(buildscript.Options{AllowLocal: true, Only: r.jobs})
	local, err := server.StartLocal(ctx, cfg, r.log.Level(zerolog.WarnLevel), map[string]modules.Module{modules.Buildscript: sched})
	if err != nil {
		return runFailed(fmt.Errorf("run: %w", err))
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), server.ShutdownTimeout)
		defer cancel()
		if err := local.Stop(sctx); err != nil {
			r.log.Warn().Err(err).Msg("stopping")
		}
	}()
	return r.build(ctx, local, gitDir, branch, commit)
}

// build triggers the build, streams its logs and waits for its end.
func (r *localRun) build(ctx context.Context, local *server.Local, gitDir, branch, commit string) error {
	tr := local.TR
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := rpc.Call[contracts.Repo](callCtx, tr, contracts.CreateRepo{Name: localRepo, URL: gitDir, DefaultBranch: branch}); err != nil {
		return runFailed(fmt.Errorf("run: %w", err))
	}
	for name, value := range r.secrets {
		if _, err := rpc.Call[contracts.OK](callCtx, tr, contracts.SetSecret{Repo: localRepo, Name: name, Value: contracts.Secret(value)}); err != nil {
			return runFailed(fmt.Errorf("run: secret %s: %w", name, err))
		}
	}

	followCtx, stopFollow := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFollow()
	finished := make(chan contracts.Event, 1)
	var logs sync.WaitGroup
	defer logs.Wait()
	following := map[string]bool{}
	var number int64
	var numberMu sync.Mutex
	followErr := make(chan error, 1)
	go func() {
		followErr <- hubclient.Follow(followCtx, tr, 0, func(ev contracts.Event) error {
			numberMu.Lock()
			n := number
			numberMu.Unlock()
			if ev.Repo != localRepo || n == 0 || ev.Build != n {
				return nil
			}
			switch ev.Type {
			case contracts.TypeBuildStarted:
				// Nobody is there to approve: running locally is the approval.
				msg, err := ev.DecodePayload()
				started, ok := msg.(contracts.BuildStarted)
				if err != nil || !ok {
					return fmt.Errorf("build.started: %v", err)
				}
				for _, j := range started.Jobs {
					if !j.Manual {
						continue
					}
					fmt.Fprintf(r.errOut, "zeroci run: approving manual job %s\n", j.ID)
					if _, err := rpc.Call[contracts.Build](followCtx, tr, contracts.ApproveJob{Repo: localRepo, Number: n, Job: j.ID, User: "zeroci-run"}); err != nil && contracts.CodeOf(err) != contracts.CodeConflict {
						return fmt.Errorf("approving %s: %w", j.ID, err)
					}
				}
			case contracts.TypeJobStarted:
				if !following[ev.Job] {
					following[ev.Job] = true
					logs.Add(1)
					go func() {
						defer logs.Done()
						r.streamLog(followCtx, tr, contracts.JobRef{Repo: localRepo, Build: n, Job: ev.Job})
					}()
				}
			case contracts.TypeBuildFinished:
				finished <- ev
				return errStop
			}
			return nil
		})
	}()

	b, err := rpc.Call[contracts.Build](callCtx, tr, contracts.TriggerBuild{Repo: localRepo, Ref: branch, Commit: commit,
		Params: r.params, Event: contracts.TriggerManual, User: "zeroci-run"})
	if err != nil {
		return runFailed(fmt.Errorf("run: trigger: %w", err))
	}
	numberMu.Lock()
	number = b.Number
	numberMu.Unlock()

	var fin contracts.Event
	select {
	case fin = <-finished:
	case err := <-followErr:
		if !errors.Is(err, errStop) {
			return runFailed(fmt.Errorf("run: following the build: %w", err))
		}
		fin = <-finished
	case <-ctx.Done():
		fmt.Fprintln(r.errOut, "zeroci run: interrupted; canceling the build")
		if _, err := rpc.Call[contracts.Build](callCtx, tr, contracts.CancelBuild{Repo: localRepo, Number: b.Number, User: "zeroci-run"}); err != nil {
			return runFailed(fmt.Errorf("run: cancel: %w", err))
		}
		select {
		case fin = <-finished:
		case <-time.After(server.ShutdownTimeout):
			return runFailed(errors.New("run: the build did not stop in time"))
		}
	}
	// Logs close when their jobs end; wait a little for the last lines.
	waited := make(chan struct{})
	go func() { logs.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		stopFollow()
	}
	// The data store has the build's end once it applied the event.
	if _, err := rpc.Call[contracts.Synced](callCtx, tr, contracts.Sync{Seq: fin.Seq}); err != nil {
		return runFailed(fmt.Errorf("run: %w", err))
	}
	final, err := rpc.Call[contracts.Build](callCtx, tr, contracts.GetBuild{Repo: localRepo, Number: b.Number})
	if err != nil {
		return runFailed(fmt.Errorf("run: %w", err))
	}
	r.summary(final)
	if final.Status != contracts.BuildStatusSuccess {
		msg := fmt.Sprintf("run: build %s", final.Status)
		if final.Error != "" {
			msg += ": " + final.Error
		}
		return &exitError{code: exitFailure, err: errors.New(msg)}
	}
	return nil
}

// errStop ends the event follower.
var errStop = errors.New("stop following")

// streamLog prints a job's log lines as "[JOB] text" until the log closes.
func (r *localRun) streamLog(ctx context.Context, tr transport.Requester, job contracts.JobRef) {
	err := logclient.Follow(ctx, tr, job, 1, func(l contracts.LogLine) error {
		r.outMu.Lock()
		defer r.outMu.Unlock()
		_, err := fmt.Fprintf(r.out, "[%s] %s\n", job.Job, l.Text)
		return err
	})
	if err != nil && ctx.Err() == nil {
		r.log.Warn().Err(err).Str("job", job.Job).Msg("following the log")
	}
}

// summary prints each job's result to stderr.
func (r *localRun) summary(b contracts.Build) {
	width := 0
	for _, j := range b.Jobs {
		width = max(width, len(j.ID))
	}
	for _, j := range b.Jobs {
		line := fmt.Sprintf("%-*s  %s", width, j.ID, j.Status)
		if j.ExitCode != nil && *j.ExitCode != 0 {
			line += fmt.Sprintf(" (exit %d)", *j.ExitCode)
		}
		if j.Reason != "" {
			line += ": " + j.Reason
		}
		fmt.Fprintln(r.errOut, line)
	}
	fmt.Fprintf(r.errOut, "build %s\n", b.Status)
}

// snapshot commits dir's working tree, as it is on disk, into a new
// repository at gitDir without touching dir's own .git; it returns the
// branch (dir's current one, or main) and the commit.
func snapshot(ctx context.Context, dir, gitDir string) (branch, commit string, err error) {
	branch = "main"
	if out, err := gitOut(ctx, dir, "", "symbolic-ref", "--short", "-q", "HEAD"); err == nil && out != "" {
		branch = out
	}
	steps := [][]string{
		{"init", "-q"},
		{"symbolic-ref", "HEAD", "refs/heads/" + branch},
		{"add", "-A", "--", "."},
		{"-c", "user.name=zeroci", "-c", "user.email=zeroci@localhost", "-c", "commit.gpgsign=false",
			"commit", "-q", "--no-verify", "--allow-empty", "-m", "zeroci run: working tree"},
	}
	for _, args := range steps {
		if _, err := gitOut(ctx, dir, gitDir, args...); err != nil {
			return "", "", err
		}
	}
	commit, err = gitOut(ctx, dir, gitDir, "rev-parse", "HEAD")
	return branch, commit, err
}

// gitOut runs git in dir (with gitDir as its repository and dir as its work
// tree when gitDir is set) and returns its trimmed output.
func gitOut(ctx context.Context, dir, gitDir string, args ...string) (string, error) {
	if gitDir != "" {
		args = append([]string{"--git-dir=" + gitDir, "--work-tree=" + dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GIT_DIR=") || strings.HasPrefix(kv, "GIT_WORK_TREE=") || strings.HasPrefix(kv, "GIT_INDEX_FILE=")
	})
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("git %s: %s", args[len(args)-1], strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
