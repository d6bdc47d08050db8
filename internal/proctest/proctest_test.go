//go:build unix

package proctest

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestGone(t *testing.T) {
	if Gone(os.Getpid()) {
		t.Fatal("this test's own process is gone")
	}
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if Gone(pid) {
		t.Fatal("a running sleep is gone")
	}
	cmd.Process.Kill()
	// Unreaped, the killed child is a zombie: gone.
	for deadline := time.Now().Add(10 * time.Second); !Gone(pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a killed, unreaped child is not gone")
		}
	}
	cmd.Wait()
	if !Gone(pid) {
		t.Fatal("a reaped child is not gone")
	}
}
