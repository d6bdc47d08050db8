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

// maxInlineScript is the longest script passed to sh as an argument
// (`sh -e -c SCRIPT`); a longer one goes through a file. Linux takes up to
// 128 KiB in one argument; creating the file costs more than the rest of
// starting a job on some machines (0.3–1 ms per file created, see
// docs/BENCHMARKS.md, Pipelines).
const maxInlineScript = 32 << 10

// Run runs s; see Executor. A script longer than maxInlineScript is
// written to a file in a fresh temporary directory (removed afterwards),
// not in the workspace.
func (sh *Shell) Run(ctx context.Context, s Spec, out Output) Result {
	if err := s.validate(false); err != nil {
		return Result{Err: err}
	}
	text := s.scriptText()
	args := []string{"-e", "-c", "--", text} // --: a script may start with "-"
	if len(text) > maxInlineScript {
		dir, file, err := writeScript(sh.opts.tempDir, text)
		if err != nil {
			return Result{Err: err}
		}
		defer os.RemoveAll(dir)
		args = []string{"-e", file}
	}
	cmd := exec.Command("/bin/sh", args...)
	cmd.Dir = s.Dir
	cmd.Env = shellEnv(s.Env)
	g := &groupRun{cmd: cmd, timeout: s.Timeout, opts: sh.opts, out: out}
	return g.run(ctx)
}
