//go:build !unix

package gitrepo

import "os/exec"

// setProcessGroup: without process groups, cancellation kills git alone.
func setProcessGroup(cmd *exec.Cmd) {}
