package runtime

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// journal records lifecycle calls of fake modules, in order.
type journal struct {
	mu  sync.Mutex
	log []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.log = append(j.log, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.log)
}

type fake struct {
	name     string
	j        *journal
	startErr error
	stopErr  error
	// onStart runs inside Start, with the host.
	onStart func(modules.Host)
}

func (f *fake) Name() string { return f.name }

func (f *fake) Start(ctx context.Context, h modules.Host) error {
	f.j.add("start " + f.name)
	if f.onStart != nil {
		f.onStart(h)
	}
	return f.startErr
}

func (f *fake) Stop(ctx context.Context) error {
	f.j.add("stop " + f.name)
	return f.stopErr
}

func newTransport(t *testing.T) transport.Transport {
	t.Helper()
	tr := inproc.NewNetwork().Node()
	t.Cleanup(func() { tr.Close() })
	return tr
}

func fakes(j *journal, names ...string) []modules.Module {
	var ms []modules.Module
	for _, n := range names {
		ms = append(ms, &fake{name: n, j: j})
	}
	return ms
}

func TestStartOrderStopReverse(t *testing.T) {
	tr := newTransport(t)
	j := &journal{}
	var buf bytes.Buffer
	rt := New(tr, zerolog.New(&buf), "/data")
	names := modules.Names()
	if err := rt.Start(context.Background(), fakes(j, names...), time.Second); err != nil {
		t.Fatal(err)
	}
	if failed := Probe(context.Background(), tr, names, time.Second); len(failed) != 0 {
		t.Fatalf("after start, unhealthy: %v", failed)
	}
	if err := rt.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range names {
		want = append(want, "start "+n)
	}
	for i := len(names) - 1; i >= 0; i-- {
		want = append(want, "stop "+names[i])
	}
	if got := j.get(); !slices.Equal(got, want) {
		t.Errorf("calls\n got %v\nwant %v", got, want)
	}
	failed := Probe(context.Background(), tr, names, time.Second)
	for _, n := range names {
		if !errors.Is(failed[n], transport.ErrNoResponder) {
			t.Errorf("after stop, %s probe: %v, want ErrNoResponder", n, failed[n])
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if !strings.Contains(line, `"module":"`) {
			t.Errorf("log line without module field: %s", line)
		}
	}
}

// TestHealthAnswersOnlyAfterStart: during a module's Start its health
// service is not there yet; the modules before it are healthy.
func TestHealthAnswersOnlyAfterStart(t *testing.T) {
	tr := newTransport(t)
	j := &journal{}
	var during map[string]error
	ms := fakes(j, "eventhub", "datastore")
	ms[1].(*fake).onStart = func(h modules.Host) {
		during = Probe(context.Background(), h.Transport(), []string{"eventhub", "datastore"}, time.Second)
	}
	rt := New(tr, zerolog.Nop(), t.TempDir())
	if err := rt.Start(context.Background(), ms, time.Second); err != nil {
		t.Fatal(err)
	}
	defer rt.Stop(context.Background())
	if during["eventhub"] != nil || !errors.Is(during["datastore"], transport.ErrNoResponder) {
		t.Errorf("probe during datastore's start: %v", during)
	}
}

func TestHostGivesModuleItsLoggerAndDataDir(t *testing.T) {
	tr := newTransport(t)
	var buf bytes.Buffer
	var dir string
	m := &fake{name: "blob", j: &journal{}, onStart: func(h modules.Host) {
		dir = h.DataDir()
		l := h.Logger()
		l.Info().Msg("hello")
	}}
	rt := New(tr, zerolog.New(&buf), "/var/lib/zeroci")
	if err := rt.Start(context.Background(), []modules.Module{m}, time.Second); err != nil {
		t.Fatal(err)
	}
	defer rt.Stop(context.Background())
	if dir != "/var/lib/zeroci" {
		t.Errorf("data dir %q", dir)
	}
	if !strings.Contains(buf.String(), `{"level":"info","module":"blob","message":"hello"}`) {
		t.Errorf("module log: %s", buf.String())
	}
}

func TestFailedStartStopsStartedModules(t *testing.T) {
	tr := newTransport(t)
	j := &journal{}
	ms := fakes(j, "eventhub", "datastore", "blob", "logging")
	boom := errors.New("boom")
	ms[2].(*fake).startErr = boom
	rt := New(tr, zerolog.Nop(), t.TempDir())
	err := rt.Start(context.Background(), ms, time.Second)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "runtime: start blob: boom") {
		t.Fatalf("error %v", err)
	}
	want := []string{"start eventhub", "start datastore", "start blob", "stop datastore", "stop eventhub"}
	if got := j.get(); !slices.Equal(got, want) {
		t.Errorf("calls\n got %v\nwant %v", got, want)
	}
	failed := Probe(context.Background(), tr, []string{"eventhub", "datastore", "blob"}, time.Second)
	if len(failed) != 3 {
		t.Errorf("health services left behind after a failed start: %v", failed)
	}
}

func TestCancelledStart(t *testing.T) {
	tr := newTransport(t)
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	ms := fakes(j, "eventhub", "datastore", "blob")
	ms[0].(*fake).onStart = func(modules.Host) { cancel() }
	rt := New(tr, zerolog.Nop(), t.TempDir())
	if err := rt.Start(ctx, ms, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if got, want := j.get(), []string{"start eventhub", "stop eventhub"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}

func TestStopGoesOnAfterErrorsAndIsIdempotent(t *testing.T) {
	tr := newTransport(t)
	j := &journal{}
	ms := fakes(j, "eventhub", "datastore", "blob")
	ms[1].(*fake).stopErr = errors.New("disk full")
	rt := New(tr, zerolog.Nop(), t.TempDir())
	if err := rt.Start(context.Background(), ms, time.Second); err != nil {
		t.Fatal(err)
	}
	err := rt.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "runtime: stop datastore: disk full") {
		t.Fatalf("error %v", err)
	}
	if got, want := j.get()[3:], []string{"stop blob", "stop datastore", "stop eventhub"}; !slices.Equal(got, want) {
		t.Errorf("stops %v, want %v", got, want)
	}
	if err := rt.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := rt.Start(context.Background(), fakes(j, "api"), time.Second); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop: %v, want ErrStopped", err)
	}
	if n := len(j.get()); n != 6 {
		t.Errorf("%d calls, want 6: %v", n, j.get())
	}
}

func TestHealthServiceFailureStopsModule(t *testing.T) {
	closed := newTransport(t)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	rt := New(closed, zerolog.Nop(), t.TempDir())
	err := rt.Start(context.Background(), fakes(j, "eventhub"), time.Second)
	if !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("error %v, want ErrClosed", err)
	}
	if got, want := j.get(), []string{"start eventhub", "stop eventhub"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}
