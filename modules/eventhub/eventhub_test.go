package eventhub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fileHub returns a hub on a file log in dir.
func fileHub(dir string, o filelog.Options) *eventhub.Hub {
	return eventhub.New(eventhub.Options{OpenLog: func(ctx context.Context, _ string) (eventlog.Log, error) {
		return filelog.Open(dir, o)
	}})
}

// env is a hub and a client node.
type env struct {
	hubTR, client transport.Transport
	dir           string
	stopHub       func()
}

// inprocEnv runs the hub and the client on one in-process network.
func inprocEnv(t *testing.T, o filelog.Options) *env {
	t.Helper()
	net := inproc.NewNetwork()
	hubTR, client := net.Node(), net.Node()
	t.Cleanup(func() { client.Close(); hubTR.Close() })
	e := &env{hubTR: hubTR, client: client, dir: t.TempDir()}
	e.stopHub = moduletest.Start(t, fileHub(e.dir, o), moduletest.Host{TR: hubTR, Log: moduletest.Logger(t), Dir: e.dir})
	return e
}

// tcpEnv runs the hub on a ZeroMQ broker on loopback tcp and the client
// on another node that reaches it.
func tcpEnv(t *testing.T) *env {
	t.Helper()
	hubTR, client := moduletest.ZMQPair(t, "tcp://127.0.0.1:0")
	e := &env{hubTR: hubTR, client: client, dir: t.TempDir()}
	e.stopHub = moduletest.Start(t, fileHub(e.dir, filelog.Options{}), moduletest.Host{TR: hubTR, Log: moduletest.Logger(t), Dir: e.dir})
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func event(t testing.TB, repo string, n int64) contracts.Event {
	ev, err := contracts.NewEvent(contracts.Subject{Repo: repo, Build: n},
		contracts.BuildTriggered{Ref: "main", Event: contracts.TriggerManual, Params: map[string]string{"N": fmt.Sprint(n)}})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestPublishReadIdempotent(t *testing.T) {
	e := inprocEnv(t, filelog.Options{})
	ctx := ctxT(t)
	var events []contracts.Event
	for i := int64(1); i <= 5; i++ {
		ev := event(t, "web", i)
		pub, err := hubclient.Publish(ctx, e.client, ev)
		if err != nil {
			t.Fatal(err)
		}
		if pub.Seq != i || pub.Duplicate {
			t.Fatalf("publish %d: %+v", i, pub)
		}
		events = append(events, ev)
	}
	// A retry of event 2 (same ID) is not stored again.
	pub, err := hubclient.Publish(ctx, e.client, events[1])
	if err != nil || pub.Seq != 2 || !pub.Duplicate {
		t.Fatalf("republish = %+v, %v; want seq 2, duplicate", pub, err)
	}
	batch, err := hubclient.Read(ctx, e.client, contracts.ReadEvents{Since: 1, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Events) != 3 || batch.Next != 4 || batch.Head != 5 {
		t.Fatalf("read: %d events, next %d, head %d", len(batch.Events), batch.Next, batch.Head)
	}
	for i, got := range batch.Events {
		want := events[i+1]
		if got.Seq != int64(i+2) || got.ID != want.ID || string(got.Payload) != string(want.Payload) || !got.Time.Equal(want.Time) {
			t.Errorf("event %d: got %+v, want %+v", i+2, got, want)
		}
	}
	// Filters: only repo "api" events, of which there are none, but the
	// read still reports how far it looked.
	batch, err = hubclient.Read(ctx, e.client, contracts.ReadEvents{Repo: "api"})
	if err != nil || len(batch.Events) != 0 || batch.Next != 5 || batch.Head != 5 {
		t.Fatalf("filtered read = %+v, %v", batch, err)
	}
	// A reader ahead of the log (the log was replaced) is told so.
	if _, err := hubclient.Read(ctx, e.client, contracts.ReadEvents{Since: 99}); contracts.CodeOf(err) != contracts.CodeConflict {
		t.Fatalf("read past the head: %v, want conflict", err)
	}
	if _, err := hubclient.Publish(ctx, e.client, contracts.Event{}); contracts.CodeOf(err) != contracts.CodeInvalidArgument {
		t.Fatalf("invalid event: %v, want invalid_argument", err)
	}
}

// follow collects what hubclient.Follow delivers until it has want events.
// If hold is not nil, the consumer stops after its first event until hold
// is closed, so the live queue overflows.
func follow(ctx context.Context, t *testing.T, tr transport.Transport, since int64, want int, hold <-chan struct{}) []contracts.Event {
	t.Helper()
	var got []contracts.Event
	done := errors.New("done")
	err := hubclient.Follow(ctx, tr, since, func(ev contracts.Event) error {
		got = append(got, ev)
		if hold != nil && len(got) == 1 {
			<-hold
		}
		if len(got) == want {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("follow: %v after %d events", err, len(got))
	}
	return got
}

// checkSeq checks events are since+1, since+2... each once.
func checkSeq(t *testing.T, events []contracts.Event, since int64) {
	t.Helper()
	for i, ev := range events {
		if ev.Seq != since+int64(i)+1 {
			t.Fatalf("event %d has seq %d, want %d", i, ev.Seq, since+int64(i)+1)
		}
	}
}

// publishAll publishes n events from each of p goroutines.
func publishAll(ctx context.Context, t *testing.T, tr transport.Transport, p, n int) {
	var wg sync.WaitGroup
	for g := range p {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if _, err := hubclient.Publish(ctx, tr, event(t, fmt.Sprintf("r%d", g), int64(i+1))); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func testFollowDuringPublishes(t *testing.T, e *env) {
	ctx := ctxT(t)
	publishAll(ctx, t, e.client, 1, 10) // history before the follower starts
	const p, n = 8, 250
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishAll(ctx, t, e.client, p, n)
	}()
	got := follow(ctx, t, e.client, 3, 10+p*n-3, nil)
	<-done
	checkSeq(t, got, 3)
}

func TestFollowInproc(t *testing.T) { testFollowDuringPublishes(t, inprocEnv(t, filelog.Options{})) }
func TestFollowTCP(t *testing.T)    { testFollowDuringPublishes(t, tcpEnv(t)) }

// A follower slower than the live stream overflows its queue; it reads
// the gap from the log and still gets every event once, in order.
func TestFollowSlowSubscriber(t *testing.T) {
	e := inprocEnv(t, filelog.Options{})
	ctx := ctxT(t)
	const total = 12000 // more than the follower's live queue holds
	publishAll(ctx, t, e.client, 1, 1)
	caughtUp, published := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(published)
		select {
		case <-caughtUp:
		case <-ctx.Done():
			return
		}
		publishAll(ctx, t, e.client, 8, total/8)
	}()
	var got []contracts.Event
	done := errors.New("done")
	err := hubclient.Follow(ctx, e.client, 0, func(ev contracts.Event) error {
		got = append(got, ev)
		switch len(got) {
		case 1: // caught up with the log: live events come next
			close(caughtUp)
		case 2: // the first live event: stall while the rest is published
			<-published
		case total + 1:
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("follow: %v after %d events", err, len(got))
	}
	checkSeq(t, got, 0)
}

// The hub restarts on the same log while a follower runs: the follower
// gets every event, before and after, once.
func TestFollowAcrossHubRestart(t *testing.T) {
	e := inprocEnv(t, filelog.Options{})
	ctx := ctxT(t)
	publishAll(ctx, t, e.client, 1, 50)
	got := make(chan []contracts.Event, 1)
	go func() { got <- follow(ctx, t, e.client, 0, 100, nil) }()
	e.stopHub()
	e.stopHub = moduletest.Start(t, fileHub(e.dir, filelog.Options{}), moduletest.Host{TR: e.hubTR, Log: moduletest.Logger(t), Dir: e.dir})
	publishAll(ctx, t, e.client, 1, 50)
	events := <-got
	checkSeq(t, events, 0)
}

// Retention removes old segments; a reader that needs them is told, and
// reading from the oldest held works.
func TestTooOld(t *testing.T) {
	e := inprocEnv(t, filelog.Options{SegmentBytes: 4096})
	ctx := ctxT(t)
	publishAll(ctx, t, e.client, 1, 200)
	e.stopHub()
	l, err := filelog.Open(e.dir, filelog.Options{SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	removed, err := l.Compact(ctx, time.Now().Add(time.Hour))
	st, _ := l.Stats(ctx)
	l.Close()
	if err != nil || removed == 0 {
		t.Fatalf("compact removed %d: %v", removed, err)
	}
	e.stopHub = moduletest.Start(t, fileHub(e.dir, filelog.Options{SegmentBytes: 4096}), moduletest.Host{TR: e.hubTR, Log: moduletest.Logger(t), Dir: e.dir})
	_, err = hubclient.Read(ctx, e.client, contracts.ReadEvents{Since: 0})
	if contracts.CodeOf(err) != contracts.CodeTooOld {
		t.Fatalf("read from 0 after compaction: %v, want too_old", err)
	}
	if err := hubclient.Follow(ctx, e.client, 0, func(contracts.Event) error { return nil }); !errors.Is(err, hubclient.ErrTooOld) {
		t.Fatalf("follow from 0: %v, want ErrTooOld", err)
	}
	got := follow(ctx, t, e.client, st.First-1, int(200-st.First+1), nil)
	checkSeq(t, got, st.First-1)
}
