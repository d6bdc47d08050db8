package filelog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// childEnv makes the test binary the appending child of TestKill9 (see
// TestMain): its value is the log directory.
const childEnv = "ZEROCI_FILELOG_TEST_CHILD_DIR"

// childRoundEnv tells the child which round it is, to keep IDs unique.
const childRoundEnv = "ZEROCI_FILELOG_TEST_CHILD_ROUND"

// killBody is the body of the record with this ID: 0..1999 bytes.
func killBody(id string) []byte {
	h := fnv.New64a()
	h.Write([]byte(id))
	sum := h.Sum64()
	b := make([]byte, sum%2000)
	for i := range b {
		b[i] = byte(sum >> (8 * (i % 8)))
		if i%8 == 7 {
			sum = sum*6364136223846793005 + 1442695040888963407
		}
	}
	return b
}

// runChild appends to the log in dir from 8 goroutines until killed (or a
// minute passes), printing "seq id" on stdout for every acknowledged entry.
func runChild(dir string) int {
	l, err := Open(dir, Options{SegmentBytes: 32 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	round := os.Getenv(childRoundEnv)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				es := make([]eventlog.Entry, 1+i%4)
				for j := range es {
					id := fmt.Sprintf("r%s-g%d-%d-%d", round, g, i, j)
					es[j] = eventlog.Entry{ID: id, Body: killBody(id)}
				}
				res, err := l.Append(ctx, es)
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					return
				}
				var b strings.Builder
				for j, r := range res {
					fmt.Fprintf(&b, "%d %s\n", r.Seq, es[j].ID)
				}
				mu.Lock()
				_, err = os.Stdout.WriteString(b.String()) // under PIPE_BUF: one atomic write
				mu.Unlock()
				if err != nil {
					os.Exit(1)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestKill9 runs a child process appending continuously, SIGKILLs it, and
// checks every sequence number it acknowledged is there with its exact
// body and the log is gap-free; four rounds on the same log.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs child processes")
	}
	dir := t.TempDir()
	acked := map[int64]string{}
	for round := range 4 {
		lines := runAndKill(t, dir, round, 1000)
		for _, line := range lines {
			var seq int64
			var id string
			if _, err := fmt.Sscanf(line, "%d %s", &seq, &id); err != nil {
				t.Fatalf("round %d: child printed %q: %v", round, line, err)
			}
			if prev, ok := acked[seq]; ok && prev != id {
				t.Fatalf("round %d: seq %d acknowledged for %s and, earlier, for %s", round, seq, id, prev)
			}
			acked[seq] = id
		}

		l := mustOpen(t, dir, Options{SegmentBytes: 32 << 10})
		if rec, ok := l.Recovered(); ok {
			t.Logf("round %d: recovered %+v", round, rec)
		}
		st, err := l.Stats(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]int64{}
		for since := int64(0); since < st.Head; {
			recs, err := l.Read(ctxFor(t), since, 1000)
			if err != nil {
				t.Fatalf("round %d: Read(%d): %v", round, since, err)
			}
			for _, r := range recs {
				if r.Seq != since+1 {
					t.Fatalf("round %d: record %d after %d: not gap-free", round, r.Seq, since)
				}
				if !bytes.Equal(r.Body, killBody(r.ID)) {
					t.Fatalf("round %d: record %d (%s): body of %d bytes is not the one appended", round, r.Seq, r.ID, len(r.Body))
				}
				if other, ok := ids[r.ID]; ok {
					t.Fatalf("round %d: %s stored twice, at %d and %d", round, r.ID, other, r.Seq)
				}
				ids[r.ID] = r.Seq
				since = r.Seq
			}
		}
		for seq, id := range acked {
			if ids[id] != seq {
				t.Fatalf("round %d: acknowledged seq %d (%s) is lost: that ID is at %d of %d", round, seq, id, ids[id], st.Head)
			}
		}
		t.Logf("round %d: %d acknowledged, head %d", round, len(acked), st.Head)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// runAndKill starts the child on dir, SIGKILLs it once it acknowledged at
// least n entries, and returns every line it printed.
func runAndKill(t *testing.T, dir string, round, n int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+dir, fmt.Sprintf("%s=%d", childRoundEnv, round))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []string
		eof   = make(chan struct{})
	)
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(lines)
	}
	deadline := time.Now().Add(60 * time.Second)
	for count() < n {
		select {
		case <-eof:
			_ = cmd.Wait()
			t.Fatalf("round %d: the child ended after %d acknowledgements: %s", round, count(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-eof
			_ = cmd.Wait()
			t.Fatalf("round %d: only %d acknowledgements after a minute: %s", round, count(), stderr.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-eof
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("round %d: child ended with %v, want killed by SIGKILL; stderr: %s", round, err, stderr.String())
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child ended with %v, want killed by SIGKILL; stderr: %s", round, err, stderr.String())
	}
	return lines
}
