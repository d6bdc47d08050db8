package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/datastore/store"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/zmq"
)

// zeroci runs a one-shot command and returns its exit code and output.
func zeroci(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func dumpStore(t *testing.T, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Options{Driver: store.DriverSQLite, DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestMigrateAndRebuild: `zeroci migrate` prepares a fresh data store;
// a hub and data store process serve commands from another process;
// `zeroci datastore rebuild` refuses while they run, and once they are
// stopped recreates the same rows from the event log; the restarted
// data store goes on from there.
func TestMigrateAndRebuild(t *testing.T) {
	dir := t.TempDir()
	hubEP, dsEP := "tcp://"+freeAddr(t), "tcp://"+freeAddr(t)
	cfg := fmt.Sprintf("data_dir: data\ncluster:\n  endpoints:\n    eventhub: %s\n    datastore: %s\n", hubEP, dsEP)
	for _, m := range []string{"blob", "logging", "buildscript"} {
		cfg += fmt.Sprintf("    %s: tcp://%s\n", m, freeAddr(t))
	}
	if err := os.WriteFile(filepath.Join(dir, "split.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := zeroci(t, dir, "migrate", "--config", "split.yaml"); code != 0 || !strings.Contains(out, "applied migration 1") {
		t.Fatalf("migrate: %d %s", code, out)
	}
	if code, out := zeroci(t, dir, "migrate", "--config", "split.yaml"); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate again: %d %s", code, out)
	}
	if code, out := zeroci(t, dir, "migrate", "--config", "nope.yaml"); code != 2 {
		t.Fatalf("migrate with a missing config: %d %s", code, out)
	}

	startServer := func(name string) *proc {
		p := start(t, name, dir, cleanEnv(), "server", "--config", "split.yaml", "--modules", "eventhub,datastore", "--http", "127.0.0.1:0")
		p.logLine("data store started", 60*time.Second)
		return p
	}
	srv := startServer("server")
	keyHex, err := os.ReadFile(filepath.Join(dir, "data", "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := zmq.New(zmq.Config{Key: hexKey(keyHex), Routes: map[string]string{"eventhub": hubEP, "datastore": dsEP}, Bus: hubEP})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must := func(req contracts.Message) contracts.Message {
		t.Helper()
		rep, err := rpc.Do(ctx, node, req)
		if err != nil {
			t.Fatalf("%s: %v", req.MessageType(), err)
		}
		return rep
	}
	for _, name := range []string{"web", "api"} {
		must(contracts.CreateRepo{Name: name, URL: "https://git.example.com/" + name + ".git", WebhookSecret: "hook"})
		must(contracts.SetSecret{Repo: name, Name: "TOKEN", Value: contracts.Secret("v-" + name)})
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo := []string{"web", "api"}[i%2]
			if _, err := rpc.Do(ctx, node, contracts.TriggerBuild{Repo: repo, Event: contracts.TriggerPush}); err != nil {
				t.Errorf("trigger: %v", err)
			}
		}()
	}
	wg.Wait()
	must(contracts.PlanBuild{Repo: "web", Number: 3, Commit: strings.Repeat("9f", 20), Jobs: []contracts.PlannedJob{{ID: "a"}, {ID: "b", DependsOn: []string{"a"}, Manual: true}}})
	must(contracts.CancelBuild{Repo: "api", Number: 2})
	must(contracts.CreateToken{Name: "ci", Scope: contracts.ScopeWrite, Hash: contracts.TokenHash("secret-token")})

	if code, out := zeroci(t, dir, "datastore", "rebuild", "--config", "split.yaml"); code != 1 || !strings.Contains(out, "stop the server first") {
		t.Fatalf("rebuild while running: %d %s", code, out)
	}
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("server exit %d", code)
	}
	db := filepath.Join(dir, "data", "datastore", "zeroci.db")
	before := dumpStore(t, db)
	if !strings.Contains(before, "web") || !strings.Contains(before, "ci") {
		t.Fatalf("dump lacks the rows:\n%s", before)
	}
	code, out := zeroci(t, dir, "datastore", "rebuild", "--config", "split.yaml")
	if code != 0 || !strings.Contains(out, "rebuilt the data store from") {
		t.Fatalf("rebuild: %d %s", code, out)
	}
	if after := dumpStore(t, db); after != before {
		t.Fatalf("rebuild changed the rows:\n--- before\n%s\n--- after\n%s", before, after)
	}
	startServer("server (restarted)")
	// The client's link to the restarted process resynchronises in the
	// background; until it has, a request may be refused as lost (it is
	// not idempotent, so the transport does not resend it). Wait with an
	// idempotent read.
	waitFor(t, ctx, "the restarted data store to answer", func() bool {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := rpc.Call[contracts.Repo](rctx, node, contracts.GetRepo{Name: "web"}, transport.Idempotent())
		return err == nil
	})
	b, err := rpc.Call[contracts.Build](ctx, node, contracts.TriggerBuild{Repo: "web", Event: contracts.TriggerManual})
	if err != nil || b.Number != 11 {
		t.Fatalf("trigger after rebuild: %+v %v; want number 11", b, err)
	}
}
