//go:build unix

package executor

import (
	"context"
	"os"
	"os/exec"
)

// Shell runs scripts on the host: `sh -e SCRIPTFILE` in the workspace, in
// a process group of its own, with the environment described at Spec.Env.
type Shell struct{ opts options }

var _ Executor = (*Shell)(nil)

// NewShell returns the shell executor. It has no side effects.
func NewShell(opts ...Option) *Shell { return &Shell{opts: newOptions(opts)} }

// Name returns "shell".
func (*Shell) Name() string { return "shell" }

// Run runs s; see Executor. The script is written to a file in a fresh
// temporary directory (removed afterwards), not in the workspace.
func (sh *Shell) Run(ctx context.Context, s Spec, out Output) Result {
	if err := s.validate(false); err != nil {
		return Result{Err: err}
	}
	dir, file, err := writeScript(sh.opts.tempDir, s.scriptText())
	if err != nil {
		return Result{Err: err}
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("/bin/sh", "-e", file)
	cmd.Dir = s.Dir
	cmd.Env = shellEnv(s.Env)
	g := &groupRun{cmd: cmd, timeout: s.Timeout, opts: sh.opts, out: out}
	return g.run(ctx)
}
