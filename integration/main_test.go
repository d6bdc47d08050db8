// Package integration starts the real zeroci binary as processes and checks
// what a user or an orchestrator sees: exit codes, stderr, HTTP probes, and
// split deployments across processes. TestMain builds the binary once (with
// -race when the tests run with -race). `go test -short` skips them.
package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the zeroci binary TestMain built.
var binary string

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: skipped in -short mode")
		return 0
	}
	dir, err := os.MkdirTemp("", "zeroci-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "zeroci")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command(goTool(), append(args, "../cmd/zeroci")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: building zeroci: %v\n", err)
		return 1
	}
	return m.Run()
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// proc is one running zeroci process.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	lines  []string      // stderr lines so far
	update chan struct{} // closed and replaced on every new line

	done chan struct{} // closed when the process has exited and stderr is drained
	code int           // exit code, valid after done
}

// cleanEnv is the test's environment without ZEROCI_ settings, so that the
// developer's shell cannot change what a test sees.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZEROCI_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// start runs zeroci with args in dir; the process is killed at the end of
// the test if it is still running.
func start(t *testing.T, name, dir string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, update: make(chan struct{}), done: make(chan struct{})}
	go p.read(stderr)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, strings.Join(p.stderr(), "\n"))
		}
	})
	return p
}

// read collects stderr, then waits for the process. It is the only
// goroutine a proc owns; done says it has returned.
func (p *proc) read(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.update)
		p.update = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r)
	err := p.cmd.Wait()
	p.code = p.cmd.ProcessState.ExitCode()
	if p.code == -1 && err != nil { // killed by a signal
		p.code = 128 + int(p.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal())
	}
}

func (p *proc) stderr() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// logLine waits for a JSON log line whose message is msg and returns it.
func (p *proc) logLine(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for seen := 0; ; {
		p.mu.Lock()
		lines, update := p.lines, p.update
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			var rec map[string]any
			if json.Unmarshal([]byte(lines[seen]), &rec) == nil && rec["message"] == msg {
				return rec
			}
		}
		select {
		case <-update:
		case <-p.done:
			p.t.Fatalf("%s exited (code %d) before logging %q", p.name, p.code, msg)
		case <-deadline:
			p.t.Fatalf("%s did not log %q within %v", p.name, msg, timeout)
		}
	}
}

// httpBase waits for the process to listen and returns http://ADDR.
func (p *proc) httpBase() string {
	p.t.Helper()
	rec := p.logLine("http listening", 30*time.Second)
	return "http://" + rec["addr"].(string)
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.name, timeout)
		return -1
	}
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

var client = &http.Client{Timeout: 5 * time.Second}

// getJSON returns the status and JSON body of GET url.
func getJSON(url string) (int, map[string]any, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("GET %s: %d: body is not JSON: %w", url, resp.StatusCode, err)
	}
	return resp.StatusCode, body, nil
}

// waitStatus polls GET url until it answers status, failing the test after
// timeout. It returns the body.
func waitStatus(t *testing.T, url string, status int, timeout time.Duration) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var lastCode int
	var lastBody map[string]any
	var lastErr error
	for {
		lastCode, lastBody, lastErr = getJSON(url)
		if lastErr == nil && lastCode == status {
			return lastBody
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s never answered %d within %v; last: %d %v %v", url, status, timeout, lastCode, lastBody, lastErr)
		case <-tick.C:
		}
	}
}
