package hubbench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zeroci/zeroci/contracts"
)

// The JetStream peers.
const (
	// envNATSURL names the shared NATS server (default nats.DefaultURL,
	// nats://127.0.0.1:4222).
	envNATSURL = "ZEROCI_BENCH_NATS_URL"
	// envNATSServer names the nats-server binary of the private server
	// (default defaultNATSServer). It must accept jetstream.sync_interval
	// (nats-server 2.10 and later).
	envNATSServer     = "ZEROCI_BENCH_NATS_SERVER"
	defaultNATSServer = "/usr/sbin/nats-server"
	// natsTimeout bounds connecting and each JetStream API call of a setup.
	natsTimeout = 10 * time.Second
)

// openJetStream: a file-backed stream of its own on the shared server.
func openJetStream(tb testing.TB) *peer {
	return jetStreamPeer(tb, cmp.Or(os.Getenv(envNATSURL), nats.DefaultURL))
}

// openJetStreamFsync: a file-backed stream on a private server that fsyncs
// every message before acknowledging it.
func openJetStreamFsync(tb testing.TB) *peer {
	return jetStreamPeer(tb, startNATSServer(tb))
}

// connectNATS connects to url, skipping tb when nothing answers there.
func connectNATS(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Timeout(natsTimeout/5), nats.NoReconnect())
	if err != nil {
		tb.Skipf("NATS at %s is not reachable (%v): start nats-server -js there, or set %s", url, err, envNATSURL)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// jetStreamPeer creates a file-backed stream with a unique name on the
// server at url, deleted at tb's cleanup. Publishers share one connection
// (as the hub's publishers share one node) and publish with the event ID
// as Nats-Msg-Id, so that JetStream deduplicates retries as the hub does;
// the follower has a connection of its own and an ordered consumer that
// starts at new messages.
func jetStreamPeer(tb testing.TB, url string) *peer {
	tb.Helper()
	pubNC := connectNATS(tb, url)
	js, err := jetstream.New(pubNC)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		tb.Skipf("NATS %s at %s has no JetStream: %v", pubNC.ConnectedServerVersion(), url, err)
	}
	name := "ZCIBENCH_" + strings.ToUpper(randomHex(tb, 6))
	prefix := strings.ToLower(name)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     name,
		Subjects: []string{prefix + ".>"},
		Storage:  jetstream.FileStorage,
		Replicas: 1,
	}); err != nil {
		tb.Fatalf("create stream %s on %s: %v", name, url, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil {
			tb.Errorf("delete stream %s on %s: %v", name, url, err)
		}
	})
	tb.Logf("nats-server %s at %s, stream %s", pubNC.ConnectedServerVersion(), url, name)
	subJS, err := jetstream.New(connectNATS(tb, url))
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return &peer{
		publish: func(ctx context.Context, ev contracts.Event) error {
			data, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("encode event: %w", err)
			}
			ack, err := js.Publish(ctx, prefix+"."+ev.Type, data, jetstream.WithMsgID(ev.ID.String()))
			if err != nil {
				return fmt.Errorf("jetstream publish: %w", err)
			}
			if ack.Duplicate {
				return fmt.Errorf("event %s was taken for a duplicate of seq %d", ev.ID, ack.Sequence)
			}
			return nil
		},
		follow: func(ctx context.Context, got func(string)) error {
			cons, err := subJS.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
			if err != nil {
				return fmt.Errorf("ordered consumer: %w", err)
			}
			var (
				mu   sync.Mutex
				bad  error
				fail = make(chan struct{})
			)
			cc, err := cons.Consume(func(m jetstream.Msg) {
				var ev contracts.Event
				if err := json.Unmarshal(m.Data(), &ev); err != nil {
					mu.Lock()
					defer mu.Unlock()
					if bad == nil {
						bad = fmt.Errorf("message on %s does not decode: %w", m.Subject(), err)
						close(fail)
					}
					return
				}
				got(ev.ID.String())
			})
			if err != nil {
				return fmt.Errorf("consume: %w", err)
			}
			select {
			case <-ctx.Done():
			case <-fail:
			}
			cc.Stop()
			<-cc.Closed()
			mu.Lock()
			defer mu.Unlock()
			return bad
		},
	}
}

// startNATSServer starts a private nats-server with JetStream on a free
// loopback port, its store in a temporary directory, fsyncing every
// message (sync_interval: always), and returns its URL. The server is
// stopped at tb's cleanup. tb skips when there is no binary, or it is too
// old for sync_interval.
func startNATSServer(tb testing.TB) string {
	tb.Helper()
	bin := cmp.Or(os.Getenv(envNATSServer), defaultNATSServer)
	if _, err := os.Stat(bin); err != nil {
		tb.Skipf("no nats-server for the fsync-always JetStream peer (%v): install one or set %s", err, envNATSServer)
	}
	dir := tb.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	text := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", filepath.Join(dir, "store"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	// The reader owns the pipe and reaps the process once it closes.
	var (
		addr   = make(chan string, 1)
		exited = make(chan struct{})
		mu     sync.Mutex
		tail   []string // the latest lines, for error messages
	)
	go func() {
		defer close(exited)
		const mark = "Listening for client connections on "
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			tail = append(tail[max(0, len(tail)-19):], line)
			mu.Unlock()
			if _, a, ok := strings.Cut(line, mark); ok {
				select {
				case addr <- strings.TrimSpace(a):
				default:
				}
			}
		}
		_ = cmd.Wait() // its exit status says nothing the log did not
	}()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(natsTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	lines := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(tail, "\n")
	}
	select {
	case a := <-addr:
		tb.Cleanup(stop)
		return "nats://" + a
	case <-exited:
		out := lines()
		if strings.Contains(out, `unknown field "sync_interval"`) {
			tb.Skipf("%s is too old for jetstream.sync_interval (nats-server 2.10 or later has it), so it cannot fsync every message: set %s to a newer binary\n%s", bin, envNATSServer, out)
		}
		tb.Fatalf("%s exited before listening:\n%s", bin, out)
	case <-time.After(natsTimeout):
		stop()
		tb.Fatalf("%s did not listen within %v:\n%s", bin, natsTimeout, lines())
	}
	return ""
}
