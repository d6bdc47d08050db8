//go:build unix

package gitrepo

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes git the leader of its own process group and has
// cancellation kill the whole group (git's ssh or remote-https helpers too).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
