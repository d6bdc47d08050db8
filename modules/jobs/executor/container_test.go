//go:build unix

package executor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

func TestContainerRunArgs(t *testing.T) {
	s := Spec{
		Script: []string{"echo hi"}, Dir: "/ws/job 1", Image: "alpine:3",
		Env: map[string]string{"ZEROCI_JOB": "build", "TOKEN": "s3cret"},
	}
	got := runArgs(s, "/tmp/zeroci-job-1", "zeroci-ab")
	want := []string{
		"run", "--rm", "--name", "zeroci-ab",
		"-v", "/ws/job 1:/workspace", "-w", "/workspace",
		"-v", "/tmp/zeroci-job-1:/zeroci:ro",
		"-e", "TOKEN", "-e", "ZEROCI_JOB",
		"--entrypoint", "/bin/sh", "alpine:3", "-e", "/zeroci/script.sh",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("args\n got %q\nwant %q", got, want)
	}
	env := engineEnv(s.Env)
	if !slices.Contains(env, "TOKEN=s3cret") || !slices.Contains(env, "ZEROCI_JOB=build") {
		t.Fatalf("engine env lacks the job env: %q", env)
	}
}

func TestNewContainerUnknownEngine(t *testing.T) {
	_, err := NewContainer(context.Background(), "lxc")
	if !errors.Is(err, ErrNoEngine) || !strings.Contains(err.Error(), `unknown engine "lxc"`) {
		t.Fatalf("err = %v", err)
	}
}

// engine returns a working container executor, or skips the test saying
// why there is none — after checking that the absence is reported clearly.
func engine(t *testing.T) *Container {
	t.Helper()
	ctx := context.Background()
	name, err := DetectEngine(ctx)
	if err != nil {
		if !errors.Is(err, ErrNoEngine) {
			t.Fatalf("DetectEngine: %v, want ErrNoEngine", err)
		}
		for _, e := range Engines {
			if !strings.Contains(err.Error(), e+":") {
				t.Fatalf("DetectEngine error %q does not say why %s is absent", err, e)
			}
			if _, nerr := NewContainer(ctx, e); !errors.Is(nerr, ErrNoEngine) || !strings.Contains(nerr.Error(), e) {
				t.Fatalf("NewContainer(%s) = %v, want ErrNoEngine naming it", e, nerr)
			}
		}
		if _, nerr := NewContainer(ctx, ""); !errors.Is(nerr, ErrNoEngine) {
			t.Fatalf("NewContainer(\"\") = %v, want ErrNoEngine", nerr)
		}
		if os.Getenv("ZEROCI_TEST_IMAGE") != "" {
			t.Fatalf("ZEROCI_TEST_IMAGE is set (.ci/run set up an engine) but: %v", err)
		}
		t.Skipf("no container engine on this machine: %v", err)
	}
	c, err := NewContainer(ctx, name, WithGrace(time.Second))
	if err != nil {
		t.Fatalf("DetectEngine found %s but NewContainer: %v", name, err)
	}
	return c
}

// testImage is the image the container tests run (it needs a shell and
// busybox's tools): ZEROCI_TEST_IMAGE, else alpine when the engine has it
// already. The test skips without one: it would have to be pulled, and
// this machine may reach no registry (.ci/run makes a local image).
func testImage(t *testing.T, c *Container) string {
	t.Helper()
	if img := os.Getenv("ZEROCI_TEST_IMAGE"); img != "" {
		return img
	}
	const img = "docker.io/library/alpine:3.20"
	if err := exec.Command(c.path, "image", "inspect", img).Run(); err != nil {
		t.Skipf("ZEROCI_TEST_IMAGE is not set and %s does not have %s", c.engine, img)
	}
	return img
}

func TestContainerRun(t *testing.T) {
	c := engine(t)
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/in.txt", []byte("from the workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, rec := run(t, c, context.Background(), Spec{
		Dir: dir, Image: testImage(t, c), Env: map[string]string{"ZEROCI_JOB": "build", "SPACED": "a  b"},
		Script: []string{`echo "$ZEROCI_JOB|$SPACED"`, "cat in.txt", "pwd", "echo err >&2", "exit 3", "echo after"},
	})
	if res.Err != nil || exitCode(res) != "3" {
		t.Fatalf("result %+v (lines %q)", res, rec.lines)
	}
	if got, want := rec.stream(contracts.StreamStdout), []string{"build|a  b", "from the workspace", "/workspace"}; !slices.Equal(got, want) {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got := rec.stream(contracts.StreamStderr); !slices.Contains(got, "err") {
		t.Errorf("stderr %q lacks err", got)
	}
}

func TestContainerTimeout(t *testing.T) {
	c := engine(t)
	dir := t.TempDir()
	start := time.Now()
	res, rec := run(t, c, context.Background(), Spec{
		Dir: dir, Image: testImage(t, c), Timeout: 2 * time.Second,
		Script: []string{"trap '' TERM", "echo started", "sleep 300"},
	})
	if !res.TimedOut || res.Succeeded() {
		t.Fatalf("result %+v (lines %q)", res, rec.lines)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Run took %v", took)
	}
	noContainerLeft(t, c, dir)
}

func TestContainerCancel(t *testing.T) {
	c := engine(t)
	image := testImage(t, c)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once the script runs (it wrote its marker).
		for ctx.Err() == nil {
			if _, err := os.Stat(dir + "/started"); err == nil {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	res, rec := run(t, c, ctx, Spec{Dir: dir, Image: image, Script: []string{"touch started", "sleep 300"}})
	cancel()
	if !res.Canceled || res.Succeeded() {
		t.Fatalf("result %+v (lines %q)", res, rec.lines)
	}
	noContainerLeft(t, c, dir)
}

// noContainerLeft fails when the engine still has a container (running or
// not) that mounts dir.
func noContainerLeft(t *testing.T, c *Container, dir string) {
	t.Helper()
	out, err := exec.Command(c.path, "ps", "-a", "-q", "--filter", "volume="+dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s ps: %v: %s", c.engine, err, out)
	}
	if ids := strings.TrimSpace(string(out)); ids != "" {
		t.Fatalf("containers left with the workspace mounted: %s", ids)
	}
}

func TestContainerInvalidSpec(t *testing.T) {
	c := &Container{engine: "docker", path: "/nonexistent/docker", opts: newOptions(nil)}
	dir := t.TempDir()
	for _, s := range []Spec{
		{Script: []string{"true"}, Dir: dir},                           // no image
		{Script: []string{"true"}, Dir: dir, Image: "--privileged"},    // flag, not an image
		{Script: []string{"true"}, Dir: dir + "/a:b", Image: "alpine"}, // missing dir
	} {
		if res := c.Run(context.Background(), s, nil); !errors.Is(res.Err, ErrInvalidSpec) {
			t.Errorf("spec %+v: result %+v, want ErrInvalidSpec", s, res)
		}
	}
	colon := dir + "/a:b"
	if err := os.Mkdir(colon, 0o755); err != nil {
		t.Fatal(err)
	}
	res := c.Run(context.Background(), Spec{Script: []string{"true"}, Dir: colon, Image: "alpine"}, nil)
	if !errors.Is(res.Err, ErrInvalidSpec) || !strings.Contains(res.Err.Error(), "cannot be mounted") {
		t.Errorf("dir with ':': result %+v", res)
	}
}
