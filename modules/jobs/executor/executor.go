//go:build unix

// Package executor runs one job's script: on the host with `sh -e` in its own
// process group (the shell executor) or inside a container image with podman
// or docker (the container executor). It knows nothing of builds, leases or
// the transport: the runner gives it a Spec and an Output and gets a Result.
//
// Threading: an Executor is safe for concurrent use; each Run is independent.
// Output is called from one goroutine at a time, once per line, and each
// stream's lines arrive in the order the script wrote them (the relative order
// of stdout and stderr lines is as read, which is not always as written).
// Output must not panic or call back into the Executor; a slow Output slows
// the script down (pipe backpressure) but loses nothing. Run returns only
// after its last Output call.
package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// Errors. Infrastructure failures are reported in Result.Err wrapping one of
// these; a script that fails is not an error (see Result.ExitCode).
var (
	// ErrInvalidSpec: the Spec cannot be run (empty script, missing
	// workspace, bad env name...). Nothing was started.
	ErrInvalidSpec = errors.New("executor: invalid spec")
	// ErrStart: the process could not be started.
	ErrStart = errors.New("executor: start failed")
	// ErrNoEngine: no working container engine (podman or docker) is
	// available; the message says why for each one.
	ErrNoEngine = errors.New("executor: no working container engine")
	// ErrEngine: the container engine failed (for example exit code 125:
	// the image could not be pulled or the daemon refused the container).
	ErrEngine = errors.New("executor: container engine failed")
)

// Spec is one job attempt to run.
type Spec struct {
	// Script lines, joined with "\n" and run with `sh -e`, so the script
	// stops at the first failing command.
	Script []string
	// Env is the job's environment (ZEROCI_* variables, pipeline and job
	// env, secrets). The shell executor adds only the runner's PATH, HOME,
	// USER, LOGNAME, LANG, LC_ALL, LC_CTYPE, TZ and TMPDIR when Env does not
	// set them; nothing else of the runner's environment leaks into a job.
	Env map[string]string
	// Dir is the workspace: the script's working directory (mounted at
	// /workspace by the container executor). It must exist.
	Dir string
	// Timeout bounds the run; 0 means none. When it expires the whole
	// process group is stopped and Result.TimedOut is set.
	Timeout time.Duration
	// Image is the container image; required by the container executor,
	// ignored by the shell executor.
	Image string
}

func (s Spec) validate(needImage bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	if len(s.Script) == 0 {
		return bad("empty script")
	}
	for i, l := range s.Script {
		if strings.IndexByte(l, 0) >= 0 {
			return bad("script line %d contains a NUL byte", i+1)
		}
	}
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("env name %q: must be non-empty without '=' or NUL", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return bad("env %s: value contains a NUL byte", k)
		}
	}
	if s.Timeout < 0 {
		return bad("negative timeout %v", s.Timeout)
	}
	if s.Dir == "" {
		return bad("no workspace dir")
	}
	fi, err := os.Stat(s.Dir)
	if err != nil {
		return bad("workspace: %v", err)
	}
	if !fi.IsDir() {
		return bad("workspace %s is not a directory", s.Dir)
	}
	if needImage && s.Image == "" {
		return bad("no image for the container executor")
	}
	if needImage && (strings.HasPrefix(s.Image, "-") || strings.ContainsAny(s.Image, " \t\n\x00")) {
		return bad("image %q is not an image reference", s.Image)
	}
	return nil
}

func (s Spec) scriptText() string { return strings.Join(s.Script, "\n") + "\n" }

// Output receives the script's output, one line at a time without its
// newline: valid UTF-8 (invalid bytes replaced with U+FFFD), at most
// contracts.MaxLogLineLen bytes (longer lines arrive in pieces). A final line
// without a newline is delivered too. See the package doc for threading.
type Output func(stream contracts.Stream, text string)

// Result is how a run ended.
type Result struct {
	// ExitCode is the script's exit status; nil when it did not exit on its
	// own (killed by a signal, see Signal) or never started.
	ExitCode *int
	// Signal is the signal that ended the script, 0 if none.
	Signal syscall.Signal
	// TimedOut is set when Spec.Timeout expired and the run was stopped.
	TimedOut bool
	// Canceled is set when the caller's ctx ended first and the run was
	// stopped, or ended before it started (then nothing ran).
	Canceled bool
	// Duration is from start to the script's end (not counting cleanup).
	Duration time.Duration
	// Err is an infrastructure failure (ErrInvalidSpec, ErrStart, ErrEngine,
	// a failed pipe read), not a failing script.
	Err error
}

// Succeeded reports whether the script ran to the end and exited 0.
func (r Result) Succeeded() bool {
	return r.Err == nil && !r.TimedOut && !r.Canceled && r.ExitCode != nil && *r.ExitCode == 0
}

// Executor runs job scripts.
type Executor interface {
	// Name is "shell" or "container".
	Name() string
	// Run runs s to the end, its timeout or ctx's end, whichever is first,
	// streaming output to out (nil discards it). It stops every process it
	// started before returning. Safe for concurrent use.
	Run(ctx context.Context, s Spec, out Output) Result
}

// Defaults of the options.
const (
	DefaultGrace        = 5 * time.Second
	DefaultDrainTimeout = 2 * time.Second
)

type options struct {
	grace   time.Duration
	drain   time.Duration
	tempDir string
}

// Option configures an executor.
type Option func(*options)

// WithGrace sets how long a stopped job gets between SIGTERM and SIGKILL
// (default DefaultGrace; non-positive values keep the default).
func WithGrace(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.grace = d
		}
	}
}

// WithDrainTimeout bounds how long Run keeps reading output after the
// process group is gone, in case a process outside the group (one that
// called setsid) still holds the pipes (default DefaultDrainTimeout;
// non-positive values keep the default).
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.drain = d
		}
	}
}

// WithTempDir sets where script files are written (default os.TempDir()).
func WithTempDir(dir string) Option {
	return func(o *options) { o.tempDir = dir }
}

func newOptions(opts []Option) options {
	o := options{grace: DefaultGrace, drain: DefaultDrainTimeout}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// inherited are the runner variables a shell job gets unless its Env sets them.
var inherited = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shellEnv is the environment of a shell job: the inherited runner
// variables, then env on top, sorted by name.
func shellEnv(env map[string]string) []string {
	m := make(map[string]string, len(env)+len(inherited))
	for _, k := range inherited {
		if v, ok := os.LookupEnv(k); ok {
			m[k] = v
		}
	}
	if m["PATH"] == "" {
		m["PATH"] = defaultPath
	}
	for k, v := range env {
		m[k] = v
	}
	return sortedEnv(m)
}

func sortedEnv(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// writeScript writes the script to a new file in dir and returns its
// directory (a fresh one, to be removed by the caller) and path.
func writeScript(dir, text string) (string, string, error) {
	d, err := os.MkdirTemp(dir, "zeroci-job-")
	if err != nil {
		return "", "", fmt.Errorf("%w: script dir: %v", ErrStart, err)
	}
	// Readable by a container's non-root user; the script holds no secrets
	// (those travel in the environment).
	if err := os.Chmod(d, 0o755); err != nil {
		_ = os.RemoveAll(d)
		return "", "", fmt.Errorf("%w: script dir: %v", ErrStart, err)
	}
	path := d + "/script.sh"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		_ = os.RemoveAll(d)
		return "", "", fmt.Errorf("%w: write script: %v", ErrStart, err)
	}
	return d, path, nil
}
