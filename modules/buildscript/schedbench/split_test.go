package schedbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/internal/runtime"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/buildscript"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/jobs"
	"github.com/zeroci/zeroci/modules/logging"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/transport/zmq"
)

// The environment of the runner process: its role, the endpoint of the
// benchmark process's broker, and its data directory.
const (
	roleEnv = "ZCI_SCHEDBENCH_ROLE"
	epEnv   = "ZCI_SCHEDBENCH_EP"
	dirEnv  = "ZCI_SCHEDBENCH_DIR"
)

// splitRunnerID names the runner of the separate process.
const splitRunnerID = "split-runner"

// TestMain runs the role named by ZCI_SCHEDBENCH_ROLE when this binary is
// a benchmark's child process, and the tests (checked for leaked
// goroutines) otherwise.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if role != "runner" {
			fmt.Fprintln(os.Stderr, "schedbench: unknown role", role)
			os.Exit(2)
		}
		if err := runRunner(); err != nil {
			fmt.Fprintln(os.Stderr, "schedbench runner:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runRunner is the runner process: a jobs module (capacity 2) on a ZeroMQ
// node linked to the broker at $ZCI_SCHEDBENCH_EP, until its stdin closes.
func runRunner() error {
	ep, dir := os.Getenv(epEnv), os.Getenv(dirEnv)
	if ep == "" || dir == "" {
		return fmt.Errorf("want %s and %s", epEnv, dirEnv)
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("process", "runner").Logger()
	node, err := zmq.New(zmq.Config{Routes: map[string]string{"*": ep}, Bus: ep, Logger: log})
	if err != nil {
		return err
	}
	defer node.Close()
	r := jobs.New(jobs.Options{RunnerID: splitRunnerID, Capacity: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = r.Start(ctx, moduletest.Host{TR: node, Log: log, Dir: dir})
	cancel()
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the benchmark closes it to stop us
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return r.Stop(ctx)
}

// freeTCPEndpoint returns a loopback tcp endpoint on a port that was free
// a moment ago.
func freeTCPEndpoint(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return "tcp://" + l.Addr().String()
}

// startSplit starts the event hub, data store, blob store, logging and the
// scheduler on a ZeroMQ node bound to a loopback tcp port (the node that
// brokers every service and the bus), and one runner in a separate process
// (this test binary again) linked to it over tcp. The engine's tr is that
// node.
func startSplit(tb testing.TB) *engine {
	tb.Helper()
	log := logger(tb)
	ep := freeTCPEndpoint(tb)
	node, err := zmq.New(zmq.Config{Bind: []string{ep}, Routes: map[string]string{"*": ep}, Bus: ep, Logger: log})
	if err != nil {
		tb.Fatalf("zmq node: %v", err)
	}
	dir := tb.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfg := benchConfig(dataDir)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	mods := []modules.Module{
		eventhub.New(server.HubOptions(cfg)),
		datastore.New(server.DatastoreOptions(cfg)),
		blob.New(server.BlobOptions(cfg)),
		logging.New(server.LoggingOptions(cfg)),
		buildscript.New(server.BuildscriptOptions(cfg)),
	}
	rt := runtime.New(node, log, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rt.Start(ctx, mods, server.ShutdownTimeout); err != nil {
		node.Close()
		tb.Fatalf("start modules: %v", err)
	}
	stopModules := func() {
		ctx, cancel := context.WithTimeout(context.Background(), server.ShutdownTimeout)
		defer cancel()
		if err := rt.Stop(ctx); err != nil {
			tb.Errorf("stop modules: %v", err)
		}
		node.Close()
	}

	runnerDir := filepath.Join(dir, "runner")
	if err := os.MkdirAll(runnerDir, 0o700); err != nil {
		stopModules()
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=runner", epEnv+"="+ep, dirEnv+"="+runnerDir)
	var out bytes.Buffer // read only after Wait
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		stopModules()
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		stopModules()
		tb.Fatalf("start the runner process: %v", err)
	}
	var once sync.Once
	e := &engine{tr: node, stop: func() {
		once.Do(func() {
			stdin.Close()
			if err := waitProcess(cmd, server.ShutdownTimeout); err != nil {
				tb.Errorf("runner process: %v\n%s", err, out.String())
			} else if out.Len() > 0 {
				tb.Logf("runner process said:\n%s", out.String())
			}
			stopModules()
		})
	}}
	tb.Cleanup(e.stop)
	return e
}

// waitProcess waits for cmd to exit, killing it after d.
func waitProcess(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		return errors.Join(errors.New("did not stop in time; killed"), <-done)
	}
}
