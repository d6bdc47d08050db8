package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/transport/zmq"
)

// The job whose log the logging test writes, and the secret its output
// contains every 1000th line.
var (
	itJob    = contracts.JobRef{Repo: "web", Build: 42, Job: "test"}
	itSecret = contracts.Secret("s3cr3t-t0ken-a9b8c7")
)

// itLine is line n of the job as the runner writes it: lengths vary, some
// characters need escaping in JSON, and every 1000th line shows the secret.
func itLine(n int64) string {
	s := fmt.Sprintf("line %07d \"quoted\" <tag> \\ tab\t%s", n, strings.Repeat("x", int(n%40)))
	if n%1000 == 0 {
		s += " token=" + string(itSecret) + " end"
	}
	return s
}

// itStored is line n as the logging module stores it.
func itStored(n int64) string {
	return strings.Replace(itLine(n), string(itSecret), "***", 1)
}

// runLogRole plays "logwriter" (write ZCI_IT_COUNT lines of itJob through
// a logclient.Writer, close the log, print "SUMMARY <json>") or
// "logfollower" (follow itJob from line ZCI_IT_FROM, check every line, and
// print each line's number; print "END" when the log is closed and
// drained). Both reach the event hub at ZCI_IT_HUB and the logging module
// at ZCI_IT_LOGGING with the cluster key in ZCI_IT_KEYFILE.
func runLogRole(role string) int {
	if err := logRole(role); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}

func logRole(role string) error {
	key, err := os.ReadFile(os.Getenv("ZCI_IT_KEYFILE"))
	if err != nil {
		return err
	}
	hub := os.Getenv("ZCI_IT_HUB")
	node, err := zmq.New(zmq.Config{Key: hexKey(key), Bus: hub,
		Routes: map[string]string{"*": hub, "logging": os.Getenv("ZCI_IT_LOGGING")}})
	if err != nil {
		return err
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	switch role {
	case "logwriter":
		n, err := strconv.ParseInt(os.Getenv("ZCI_IT_COUNT"), 10, 64)
		if err != nil {
			return err
		}
		w, err := logclient.NewWriter(ctx, node, itJob, 1, []contracts.Secret{itSecret}, logclient.WriterOptions{})
		if err != nil {
			return err
		}
		for i := int64(1); i <= n; i++ {
			stream := contracts.StreamStdout
			if i%7 == 0 {
				stream = contracts.StreamStderr
			}
			if err := w.Line(stream, itLine(i)); err != nil {
				return fmt.Errorf("line %d: %w", i, err)
			}
		}
		sum, err := w.Close(ctx)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(sum)
		fmt.Fprintf(out, "SUMMARY %s\n", b)
		return nil
	case "logfollower":
		from, err := strconv.ParseInt(os.Getenv("ZCI_IT_FROM"), 10, 64)
		if err != nil {
			return err
		}
		next := from
		err = logclient.Follow(ctx, node, itJob, from, func(l contracts.LogLine) error {
			if l.N != next || l.Text != itStored(l.N) {
				return fmt.Errorf("got line %d %q, want line %d %q", l.N, l.Text, next, itStored(next))
			}
			next++
			fmt.Fprintln(out, l.N)
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "END")
		return nil
	}
	return fmt.Errorf("unknown role %s", role)
}

// logProc is a writer or follower process and what it printed.
type logProc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	first   int64  // the first line number a follower printed
	last    int64  // the last line number a follower printed
	summary string // the writer's summary JSON
	end     bool   // a follower printed END
	done    chan error
}

func startLogProc(t *testing.T, role string, env ...string) *logProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &logProc{cmd: cmd, done: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			// A killed follower may leave a line without its newline: not
			// printed, as far as the test is concerned.
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			line = strings.TrimSuffix(line, "\n")
			p.mu.Lock()
			switch {
			case strings.HasPrefix(line, "SUMMARY "):
				p.summary = strings.TrimPrefix(line, "SUMMARY ")
			case line == "END":
				p.end = true
			default:
				n, err := strconv.ParseInt(line, 10, 64)
				if err != nil || n != p.last+1 && p.last != 0 {
					p.summary = fmt.Sprintf("bad output %q after line %d", line, p.last)
				}
				if p.first == 0 {
					p.first = n
				}
				p.last = n
			}
			p.mu.Unlock()
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return p
}

func (p *logProc) lastLine() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// wait waits for the process to exit.
func (p *logProc) wait(t *testing.T, ctx context.Context) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		t.Fatal("a log process did not exit")
		return nil
	}
}

// TestLogMillionLines: the logging, blob and event hub modules run in one
// server process on tcp endpoints; a writer process writes 1,000,000
// lines of one job through logclient; a follower process follows the log
// over tcp, is killed twice and started again from the line after the
// last one it printed, and together they see exactly the 1,000,000 lines,
// in order, each as stored (masked). The log is sealed into the blob store
// (checked by its SHA-256) and log.closed is published.
func TestLogMillionLines(t *testing.T) {
	const total = 1_000_000
	dir := t.TempDir()
	eps := map[string]string{}
	var cfg strings.Builder
	cfg.WriteString("data_dir: data\ncluster:\n  endpoints:\n")
	for _, m := range []string{"eventhub", "datastore", "blob", "logging", "buildscript"} {
		eps[m] = "tcp://" + freeAddr(t)
		fmt.Fprintf(&cfg, "    %s: %s\n", m, eps[m])
	}
	if err := os.WriteFile(filepath.Join(dir, "logs.yaml"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	srv := start(t, "server", dir, cleanEnv(), "server", "--config", "logs.yaml", "--modules", "eventhub,blob,logging", "--http", "127.0.0.1:0")
	srv.logLine("logging started", 60*time.Second)
	step("server started")
	keyFile := filepath.Join(dir, "data", "cluster.key")
	env := []string{"ZCI_IT_HUB=" + eps["eventhub"], "ZCI_IT_LOGGING=" + eps["logging"], "ZCI_IT_KEYFILE=" + keyFile}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	writer := startLogProc(t, "logwriter", append(env, "ZCI_IT_COUNT="+strconv.Itoa(total))...)
	var last int64 // the last line the followers printed
	for i, killAt := range []int64{300_000, 650_000, 0} {
		f := startLogProc(t, "logfollower", append(env, "ZCI_IT_FROM="+strconv.FormatInt(last+1, 10))...)
		if killAt == 0 {
			if err := f.wait(t, ctx); err != nil || !f.end {
				t.Fatalf("follower %d: %v (end printed: %t)", i+1, err, f.end)
			}
		} else {
			waitFor(t, ctx, fmt.Sprintf("follower %d to reach line %d", i+1, killAt), func() bool { return f.lastLine() >= killAt })
			if err := f.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			f.wait(t, ctx)
		}
		if f.summary != "" {
			t.Fatalf("follower %d: %s", i+1, f.summary)
		}
		if f.first != 0 && f.first != last+1 {
			t.Fatalf("follower %d started at line %d, want %d", i+1, f.first, last+1)
		}
		if f.lastLine() > last {
			last = f.lastLine()
		}
		step(fmt.Sprintf("follower %d stopped at line %d", i+1, last))
	}
	if last != total {
		t.Fatalf("the followers saw %d lines, want %d", last, total)
	}
	if err := writer.wait(t, ctx); err != nil {
		t.Fatalf("writer: %v", err)
	}
	var sum contracts.LogSummary
	if err := json.Unmarshal([]byte(writer.summary), &sum); err != nil {
		t.Fatalf("writer summary %q: %v", writer.summary, err)
	}
	step("writer closed the log")

	// The sealed blob is exactly the stored lines, and log.closed says so.
	h := sha256.New()
	var size int64
	for n := int64(1); n <= total; n++ {
		s := itStored(n) + "\n"
		h.Write([]byte(s))
		size += int64(len(s))
	}
	if sum.Lines != total || sum.Bytes != size || sum.BlobKey != "logs/web/42/test.log" || sum.Truncated {
		t.Fatalf("summary %+v, want %d lines, %d bytes", sum, total, size)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	node, err := zmq.New(zmq.Config{Key: hexKey(key), Bus: eps["eventhub"],
		Routes: map[string]string{"*": eps["eventhub"], "blob": eps["blob"], "logging": eps["logging"]}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	info, err := blobclient.Stat(ctx, node, sum.BlobKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(h.Sum(nil)); info.Size != size || info.SHA256 != want {
		t.Fatalf("blob %+v, want %d bytes, sha256 %s", info, size, want)
	}
	batch, err := hubclient.Read(ctx, node, contracts.ReadEvents{Types: []string{contracts.TypeLogClosed}})
	if err != nil || len(batch.Events) != 1 {
		t.Fatalf("log.closed events: %+v, %v", batch, err)
	}
	if ev := batch.Events[0]; ev.Repo != itJob.Repo || ev.Build != itJob.Build || ev.Job != itJob.Job {
		t.Fatalf("log.closed about %s#%d/%s", ev.Repo, ev.Build, ev.Job)
	}
	step("blob and log.closed checked")
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("server exit code %d", code)
	}
}
