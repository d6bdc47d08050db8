package logging_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/fsstore"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/logging"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is the event hub, the blob store and the logging module on one
// node, and a client node that reaches them.
type env struct {
	srv, client transport.Transport
	dir         string
	opts        logging.Options
	stopLogging func()
}

// transports names the ways the tests reach the module.
var transports = []string{"inproc", "tcp"}

func newEnv(t testing.TB, kind string, opts logging.Options) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), opts: opts}
	switch kind {
	case "inproc":
		net := inproc.NewNetwork()
		e.srv, e.client = net.Node(), net.Node()
	case "tcp":
		e.srv, e.client = moduletest.ZMQPair(t, "tcp://127.0.0.1:0")
	default:
		t.Fatalf("unknown transport %q", kind)
	}
	t.Cleanup(func() { e.client.Close(); e.srv.Close() })
	host := e.host(t)
	moduletest.Start(t, eventhub.New(eventhub.Options{OpenLog: func(ctx context.Context, dir string) (eventlog.Log, error) {
		return filelog.Open(filepath.Join(dir, "eventhub"), filelog.Options{})
	}}), host)
	moduletest.Start(t, blob.New(blob.Options{Open: func(ctx context.Context, dir string) (blobstore.Backend, error) {
		return fsstore.New(filepath.Join(dir, "blobstore"))
	}}), host)
	e.startLogging(t)
	return e
}

func (e *env) host(t testing.TB) moduletest.Host {
	return moduletest.Host{TR: e.srv, Log: moduletest.Logger(t), Dir: e.dir}
}

// startLogging starts the logging module (again).
func (e *env) startLogging(t testing.TB) {
	t.Helper()
	e.stopLogging = moduletest.Start(t, logging.New(e.opts), e.host(t))
}

// restart stops the logging module and starts it again on the same data.
func (e *env) restart(t testing.TB) {
	t.Helper()
	e.stopLogging()
	e.startLogging(t)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func jobRef(name string) contracts.JobRef {
	return contracts.JobRef{Repo: "web", Build: 7, Job: name}
}

// call sends a request and decodes its reply.
func call[R any, PR interface {
	*R
	contracts.Message
}](t testing.TB, e *env, req contracts.Message) (R, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rpc.Call[R, PR](ctx, e.client, req)
}

// must is call for requests that must succeed.
func must[R any, PR interface {
	*R
	contracts.Message
}](t testing.TB, e *env, req contracts.Message) R {
	t.Helper()
	r, err := call[R, PR](t, e, req)
	if err != nil {
		t.Fatalf("%s: %v", req.MessageType(), err)
	}
	return r
}

// wantCode checks that err carries code.
func wantCode(t testing.TB, what string, err error, code contracts.Code) {
	t.Helper()
	if got := contracts.CodeOf(err); got != code {
		t.Fatalf("%s: %v (code %q), want code %q", what, err, got, code)
	}
}

// lines makes n lines numbered from first, with text(i) as text.
func lines(first int64, n int, text func(int64) string) []contracts.LogLine {
	now := time.Now().UTC()
	out := make([]contracts.LogLine, n)
	for i := range out {
		num := first + int64(i)
		out[i] = contracts.LogLine{N: num, Time: now, Stream: contracts.StreamStdout, Text: text(num)}
	}
	return out
}

func lineText(n int64) string { return fmt.Sprintf("line %d of the job", n) }

// readAll reads the whole stored log without waiting.
func readAll(t testing.TB, e *env, job contracts.JobRef) (out []contracts.LogLine, closed bool) {
	t.Helper()
	next := int64(1)
	for {
		res := must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: next})
		out = append(out, res.Lines...)
		if len(res.Lines) == 0 {
			return out, res.Closed
		}
		next = res.Next
	}
}

// texts returns the lines' texts.
func texts(ls []contracts.LogLine) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Text
	}
	return out
}

// follower follows a log in a goroutine and collects its lines.
type follower struct {
	mu    sync.Mutex
	lines []contracts.LogLine
	done  chan error
}

// follow starts a follower from line from. hold, if not nil, is called
// with every line before it is kept (it may block).
func follow(ctx context.Context, tr transport.Transport, job contracts.JobRef, from int64, hold func(contracts.LogLine)) *follower {
	f := &follower{done: make(chan error, 1)}
	go func() {
		f.done <- logclient.Follow(ctx, tr, job, from, func(l contracts.LogLine) error {
			if hold != nil {
				hold(l)
			}
			f.mu.Lock()
			f.lines = append(f.lines, l)
			f.mu.Unlock()
			return nil
		})
	}()
	return f
}

func (f *follower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lines)
}

// wait waits for Follow to return nil and returns the lines.
func (f *follower) wait(t testing.TB, ctx context.Context) []contracts.LogLine {
	t.Helper()
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatalf("follow: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("follow did not end: %d lines", f.count())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lines
}

// checkLines checks that got are lines from, from+1... with want(n) as text.
func checkLines(t testing.TB, got []contracts.LogLine, from int64, count int, want func(int64) string) {
	t.Helper()
	if len(got) != count {
		t.Fatalf("%d lines, want %d", len(got), count)
	}
	for i, l := range got {
		n := from + int64(i)
		if l.N != n || l.Text != want(n) {
			t.Fatalf("line %d: got %d %q, want %d %q", i, l.N, l.Text, n, want(n))
		}
	}
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// closedEvents returns the log.closed events on the hub.
func closedEvents(t testing.TB, e *env) map[string]contracts.LogClosed {
	t.Helper()
	ctx := ctxT(t)
	out := map[string]contracts.LogClosed{}
	var since int64
	for {
		batch, err := hubRead(ctx, e, since)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range batch.Events {
			msg, err := ev.DecodePayload()
			if err != nil {
				t.Fatal(err)
			}
			lc := msg.(contracts.LogClosed)
			key := fmt.Sprintf("%s#%d/%s", ev.Repo, ev.Build, ev.Job)
			if _, dup := out[key]; dup {
				t.Fatalf("log.closed of %s published twice", key)
			}
			out[key] = lc
		}
		if batch.Next == since || len(batch.Events) == 0 && batch.Next >= batch.Head {
			return out
		}
		since = batch.Next
	}
}

func hubRead(ctx context.Context, e *env, since int64) (contracts.EventBatch, error) {
	return rpc.Call[contracts.EventBatch](ctx, e.client, contracts.ReadEvents{Since: since, Types: []string{contracts.TypeLogClosed}})
}

// errStop ends a Follow on purpose.
var errStop = errors.New("stop")

func blobText(t testing.TB, e *env, key string) string {
	t.Helper()
	var b strings.Builder
	if _, err := blobclient.Get(ctxT(t), e.client, key, &b); err != nil {
		t.Fatalf("get blob %s: %v", key, err)
	}
	return b.String()
}
