package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pgtest"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/transport/zmq"
)

// roleEnv makes the test binary play a part in a test instead of running
// tests: "publisher" publishes events to a hub (see runPublisher).
const roleEnv = "ZCI_IT_ROLE"

func runRole(role string) int {
	switch role {
	case "publisher":
		if err := runPublisher(); err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			return 1
		}
		return 0
	case "logwriter", "logfollower":
		return runLogRole(role)
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// runPublisher publishes ZCI_IT_COUNT events about repo ZCI_IT_REPO to the
// hub at ZCI_IT_HUB (cluster key in ZCI_IT_KEYFILE), one after another,
// retrying each through hub outages with the same event ID, and prints
// "ACK SEQ ID" for each acknowledged one.
func runPublisher() error {
	n, err := strconv.Atoi(os.Getenv("ZCI_IT_COUNT"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(os.Getenv("ZCI_IT_KEYFILE"))
	if err != nil {
		return err
	}
	node, err := zmq.New(zmq.Config{Key: hexKey(key), Routes: map[string]string{"*": os.Getenv("ZCI_IT_HUB")}, Bus: os.Getenv("ZCI_IT_HUB")})
	if err != nil {
		return err
	}
	defer node.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	repo := os.Getenv("ZCI_IT_REPO")
	for i := 1; i <= n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		ev, err := hubclient.PublishNew(ctx, node, contracts.Subject{Repo: repo, Build: int64(i)},
			contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerPush})
		cancel()
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		fmt.Fprintf(out, "ACK %d %s\n", ev.Seq, ev.ID)
		out.Flush()
	}
	return nil
}

func hexKey(b []byte) []byte {
	k := make([]byte, 0, 32)
	s := strings.TrimSpace(string(b))
	for i := 0; i+1 < len(s); i += 2 {
		v, err := strconv.ParseUint(s[i:i+2], 16, 8)
		if err != nil {
			return nil
		}
		k = append(k, byte(v))
	}
	return k
}

// publisher is a running publisher process and the acks it printed.
type publisher struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	acks map[int64]string // seq -> event id
	done chan error
}

func startPublisher(t *testing.T, hubEP, keyFile, repo string, count int) *publisher {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), roleEnv+"=publisher", "ZCI_IT_HUB="+hubEP, "ZCI_IT_KEYFILE="+keyFile,
		"ZCI_IT_REPO="+repo, "ZCI_IT_COUNT="+strconv.Itoa(count))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &publisher{cmd: cmd, acks: map[int64]string{}, done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var seq int64
			var id string
			if _, err := fmt.Sscanf(sc.Text(), "ACK %d %s", &seq, &id); err == nil {
				p.mu.Lock()
				p.acks[seq] = id
				p.mu.Unlock()
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return p
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks)
}

// TestHubSurvivesSIGKILL: two publisher processes stream events to a hub
// process, which is killed with SIGKILL mid-stream and restarted. A
// subscriber in this process, following from its last sequence
// throughout, receives every acknowledged event exactly once, in order,
// and no event twice (publishers retry with the same event ID).
func TestHubSurvivesSIGKILL(t *testing.T) {
	t.Run("files", func(t *testing.T) { hubCrash(t, "") })
	t.Run("postgres", func(t *testing.T) { hubCrash(t, pgtest.Schema(t)) })
}

func hubCrash(t *testing.T, pgDSN string) {
	dir := t.TempDir()
	hubEP := "tcp://" + freeAddr(t)
	var cfg strings.Builder
	cfg.WriteString("data_dir: data\ncluster:\n  endpoints:\n")
	fmt.Fprintf(&cfg, "    eventhub: %s\n", hubEP)
	for _, m := range []string{"datastore", "blob", "logging", "buildscript"} {
		fmt.Fprintf(&cfg, "    %s: tcp://%s\n", m, freeAddr(t))
	}
	if pgDSN != "" {
		fmt.Fprintf(&cfg, "eventhub: {backend: postgres, dsn: %q}\n", pgDSN)
	}
	if err := os.WriteFile(filepath.Join(dir, "hub.yaml"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	startHub := func(name string) *proc {
		p := start(t, name, dir, cleanEnv(), "server", "--config", "hub.yaml", "--modules", "eventhub", "--http", "127.0.0.1:0")
		p.logLine("event hub started", 60*time.Second)
		return p
	}
	hub := startHub("hub")
	keyFile := filepath.Join(dir, "data", "cluster.key")
	keyHex, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key := hexKey(keyHex)

	// The subscriber.
	sub, err := zmq.New(zmq.Config{Key: key, Routes: map[string]string{"*": hubEP}, Bus: hubEP})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var got []contracts.Event
	followDone := make(chan error, 1)
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go func() {
		followDone <- hubclient.Follow(followCtx, sub, 0, func(ev contracts.Event) error {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
			return nil
		})
	}()

	const perPublisher = 1500
	pubs := []*publisher{
		startPublisher(t, hubEP, keyFile, "alpha", perPublisher),
		startPublisher(t, hubEP, keyFile, "beta", perPublisher),
	}
	// Kill the hub once both have had some events acknowledged.
	waitFor(t, ctx, "acks before the kill", func() bool { return pubs[0].count() >= 200 && pubs[1].count() >= 200 })
	if err := hub.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hub.wait(10 * time.Second)
	killedAt := pubs[0].count() + pubs[1].count()
	startHub("hub (restarted)")

	for i, p := range pubs {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("publisher %d: %v", i, err)
			}
		case <-ctx.Done():
			t.Fatal("publishers did not finish")
		}
	}
	acks := map[int64]string{}
	var maxSeq int64
	for _, p := range pubs {
		for seq, id := range p.acks {
			if _, dup := acks[seq]; dup {
				t.Fatalf("seq %d acknowledged to both publishers", seq)
			}
			acks[seq] = id
			maxSeq = max(maxSeq, seq)
		}
	}
	if len(acks) != 2*perPublisher {
		t.Fatalf("%d acks, want %d", len(acks), 2*perPublisher)
	}
	waitFor(t, ctx, "the subscriber to reach the last ack", func() bool {
		select {
		case err := <-followDone:
			t.Fatalf("the subscriber stopped: %v", err)
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1].Seq >= maxSeq
	})
	stopFollow()
	if err := <-followDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v", err)
	}
	ids := map[contracts.ID]int64{}
	for i, ev := range got {
		if ev.Seq != int64(i+1) {
			t.Fatalf("subscriber event %d has seq %d: not in order, or a gap", i, ev.Seq)
		}
		if first, dup := ids[ev.ID]; dup {
			t.Fatalf("event %s stored twice, at %d and %d", ev.ID, first, ev.Seq)
		}
		ids[ev.ID] = ev.Seq
	}
	for seq, id := range acks {
		if got[seq-1].ID.String() != id {
			t.Fatalf("seq %d: subscriber has event %s, publisher was acked %s", seq, got[seq-1].ID, id)
		}
	}
	t.Logf("%d events, %d acknowledged before the kill, subscriber got %d", len(acks), killedAt, len(got))

	// A subscriber that starts again from a sequence gets the rest.
	var rest []contracts.Event
	errDone := errors.New("done")
	from := maxSeq / 2
	err = hubclient.Follow(ctx, sub, from, func(ev contracts.Event) error {
		rest = append(rest, ev)
		if ev.Seq == maxSeq {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) || len(rest) != int(maxSeq-from) || rest[0].Seq != from+1 {
		t.Fatalf("resume from %d: %v, %d events", from, err, len(rest))
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
