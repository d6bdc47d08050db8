//go:build unix

package executor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Engines are the container engines the container executor knows, in the
// order DetectEngine tries them.
var Engines = []string{"podman", "docker"}

// probeTimeout bounds `ENGINE info` and the engine commands that stop a
// container.
const probeTimeout = 10 * time.Second

// Where the container sees the workspace and the script.
const (
	containerWorkspace = "/workspace"
	containerScriptDir = "/zeroci"
)

// DetectEngine returns the first of Engines that is on PATH and works:
// `ENGINE info` succeeds within 10 s (so a docker CLI without a reachable
// daemon counts as absent). When none works the error wraps ErrNoEngine and
// says why for each engine.
func DetectEngine(ctx context.Context) (string, error) {
	var why []string
	for _, e := range Engines {
		if err := probeEngine(ctx, e); err != nil {
			why = append(why, err.Error())
			continue
		}
		return e, nil
	}
	return "", fmt.Errorf("%w: %s", ErrNoEngine, strings.Join(why, "; "))
}

// probeEngine says why engine cannot run containers, or nil.
func probeEngine(ctx context.Context, engine string) error {
	path, err := exec.LookPath(engine)
	if err != nil {
		return fmt.Errorf("%s: not on PATH", engine)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "info")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		msg := lastLine(out.String())
		if ctx.Err() != nil {
			msg = "no answer within " + probeTimeout.String()
		}
		return fmt.Errorf("%s: `%s info` failed (%v): %s", engine, engine, err, msg)
	}
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Container runs scripts in a container image with podman or docker:
//
//	ENGINE run --rm --name zeroci-RANDOM -v DIR:/workspace -w /workspace
//	  -v SCRIPTDIR:/zeroci:ro -e K... --entrypoint /bin/sh IMAGE -e /zeroci/script.sh
//
// Env values reach the engine CLI through its environment (`-e K` without a
// value), never its command line, so they do not show in the process list;
// the CLI itself also sees them (a job env DOCKER_HOST would redirect it).
// The image's entrypoint is replaced by /bin/sh. Exit code 125 (the engine
// could not run the container) is reported as ErrEngine. Timeout and
// cancel send SIGTERM to the container (`ENGINE kill --signal TERM`), then
// after the grace period `ENGINE kill` and `ENGINE rm -f`. Volumes are
// mounted without SELinux relabeling (no :z).
type Container struct {
	engine string // name
	path   string // resolved executable
	opts   options
}

var _ Executor = (*Container)(nil)

// NewContainer returns the container executor for engine ("podman",
// "docker", or "" to detect one). It checks that the engine works (see
// DetectEngine) and otherwise returns an error wrapping ErrNoEngine with
// the reason.
func NewContainer(ctx context.Context, engine string, opts ...Option) (*Container, error) {
	if engine == "" {
		e, err := DetectEngine(ctx)
		if err != nil {
			return nil, err
		}
		engine = e
	} else {
		known := false
		for _, e := range Engines {
			known = known || e == engine
		}
		if !known {
			return nil, fmt.Errorf("%w: unknown engine %q (want one of %s)", ErrNoEngine, engine, strings.Join(Engines, ", "))
		}
		if err := probeEngine(ctx, engine); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoEngine, err)
		}
	}
	path, err := exec.LookPath(engine)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoEngine, engine, err)
	}
	return &Container{engine: engine, path: path, opts: newOptions(opts)}, nil
}

// Name returns "container".
func (*Container) Name() string { return "container" }

// Engine returns the engine's name: podman or docker.
func (c *Container) Engine() string { return c.engine }

// Run runs s in s.Image; see Executor and Container.
func (c *Container) Run(ctx context.Context, s Spec, out Output) Result {
	if err := s.validate(true); err != nil {
		return Result{Err: err}
	}
	abs, err := filepath.Abs(s.Dir)
	if err != nil {
		return Result{Err: fmt.Errorf("%w: workspace: %v", ErrInvalidSpec, err)}
	}
	if strings.ContainsAny(abs, ":,") {
		return Result{Err: fmt.Errorf("%w: workspace %s: a path with ':' or ',' cannot be mounted", ErrInvalidSpec, abs)}
	}
	s.Dir = abs
	dir, _, err := writeScript(c.opts.tempDir, s.scriptText())
	if err != nil {
		return Result{Err: err}
	}
	defer os.RemoveAll(dir)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand)
	name := "zeroci-" + hex.EncodeToString(rnd[:])

	cmd := exec.Command(c.path, runArgs(s, dir, name)...)
	cmd.Dir = s.Dir
	cmd.Env = engineEnv(s.Env)
	engineCmd := func(args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, c.path, args...)
		cmd.WaitDelay = time.Second
		_ = cmd.Run() // best effort: the container may be gone already
	}
	g := &groupRun{
		cmd: cmd, timeout: s.Timeout, opts: c.opts, out: out,
		onTerminate: func() { engineCmd("kill", "--signal", "TERM", name) },
		onKill:      func() { engineCmd("kill", name) },
	}
	res := g.run(ctx)
	if res.TimedOut || res.Canceled {
		engineCmd("rm", "-f", name)
	}
	if res.Err == nil && res.ExitCode != nil && *res.ExitCode == 125 {
		res.Err = fmt.Errorf("%w: %s exited 125: it could not run image %s (see the job log)", ErrEngine, c.engine, s.Image)
	}
	return res
}

// runArgs is the engine's command line for s.
func runArgs(s Spec, scriptDir, name string) []string {
	args := []string{
		"run", "--rm", "--name", name,
		"-v", s.Dir + ":" + containerWorkspace, "-w", containerWorkspace,
		"-v", scriptDir + ":" + containerScriptDir + ":ro",
	}
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-e", k)
	}
	return append(args, "--entrypoint", "/bin/sh", s.Image, "-e", containerScriptDir+"/script.sh")
}

// engineEnv is the engine CLI's environment: the runner's, with the job's
// env on top (the CLI copies those into the container, see runArgs).
func engineEnv(env map[string]string) []string {
	m := make(map[string]string, len(env))
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	for k, v := range env {
		m[k] = v
	}
	return sortedEnv(m)
}
