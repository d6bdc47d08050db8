package hubbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pgtest"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/pglog"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
	"github.com/zeroci/zeroci/transport/zmq"
)

// runTimeout bounds one measured run: a run still going by then is a hang
// (a lost event, a dead link), not a slow system.
const runTimeout = 2 * time.Minute

// benchKey is the cluster key of every zmq node (32 bytes, as in production).
var benchKey = []byte("zeroci-hubbench-cluster-key-32by")

// peer is one system under test: a durable event log with a live feed.
type peer struct {
	// publish stores ev and returns once the system acknowledged it as
	// stored. Safe for concurrent use.
	publish func(ctx context.Context, ev contracts.Event) error
	// follow calls got with the ID of every event published after follow
	// started (events published before may or may not be delivered), from
	// one goroutine, until ctx ends; then it returns nil, or earlier with
	// an error. One follow at a time.
	follow func(ctx context.Context, got func(id string)) error
}

// system names a peer and how to open it; open skips tb when the system is
// not available here, and closes what it opened at tb's cleanup.
type system struct {
	name string
	open func(tb testing.TB) *peer
}

// systems are every system the hub benchmarks compare, zeroci first.
func systems() []system {
	return []system{
		{"zeroci-inproc", openInproc},
		{"zeroci-tcp", func(tb testing.TB) *peer { return openTCP(tb, openFileLog, false) }},
		{"zeroci-tcp-pglog", openTCPPostgres},
		{"jetstream", openJetStream},
		{"jetstream-fsync", openJetStreamFsync},
	}
}

// newEvent returns a fresh build.triggered event, about 300 bytes as JSON.
func newEvent(build int64) (contracts.Event, error) {
	return contracts.NewEvent(contracts.Subject{Repo: "web-frontend", Build: build}, contracts.BuildTriggered{
		Ref:    "main",
		Commit: "3f9c2a1d8e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a",
		Params: map[string]string{"DEPLOY_ENV": "staging", "GO_VERSION": "1.26"},
		Event:  contracts.TriggerPush,
		User:   "alice",
	})
}

// openFileLog opens a filelog in the hub's data directory.
func openFileLog(_ context.Context, dataDir string) (eventlog.Log, error) {
	l, err := filelog.Open(filepath.Join(dataDir, "events"), filelog.Options{})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// startHub starts the hub module on tr, with a fresh data directory; it
// stops at tb's cleanup, before the transports registered earlier close.
func startHub(tb testing.TB, tr transport.Transport, open func(context.Context, string) (eventlog.Log, error), shared bool) {
	tb.Helper()
	hub := eventhub.New(eventhub.Options{OpenLog: open, Shared: shared})
	moduletest.Start(tb, hub, moduletest.Host{TR: tr, Log: moduletest.Logger(tb), Dir: tb.TempDir()})
}

// openInproc: the hub, the publishers and the follower on three nodes of
// one in-process network.
func openInproc(tb testing.TB) *peer {
	net := inproc.NewNetwork()
	hubTR, pub, sub := net.Node(), net.Node(), net.Node()
	tb.Cleanup(func() { sub.Close(); pub.Close(); hubTR.Close() })
	startHub(tb, hubTR, openFileLog, false)
	return zerociPeer(pub, sub)
}

// openTCP: the hub on a zmq node that binds loopback tcp and brokers the
// bus and every service; the publishers and the follower on two other zmq
// nodes (two processes in production).
func openTCP(tb testing.TB, open func(context.Context, string) (eventlog.Log, error), shared bool) *peer {
	tb.Helper()
	ep := "tcp://127.0.0.1:0"
	hubTR, err := zmq.New(zmq.Config{Key: benchKey, Bind: []string{ep}, Routes: map[string]string{"*": ep}, Bus: ep})
	if err != nil {
		tb.Fatalf("zmq hub node: %v", err)
	}
	tb.Cleanup(func() { hubTR.Close() })
	ep = hubTR.Endpoints()[0]
	var clients [2]transport.Transport
	for i := range clients {
		n, err := zmq.New(zmq.Config{Key: benchKey, Routes: map[string]string{"*": ep}, Bus: ep})
		if err != nil {
			tb.Fatalf("zmq client of %s: %v", ep, err)
		}
		tb.Cleanup(func() { n.Close() })
		clients[i] = n
	}
	startHub(tb, hubTR, open, shared)
	return zerociPeer(clients[0], clients[1])
}

// openTCPPostgres is openTCP with the hub's log in PostgreSQL, in a schema
// of its own; shared, as a deployment with this log runs it.
func openTCPPostgres(tb testing.TB) *peer {
	dsn := pgtest.Schema(tb)
	return openTCP(tb, func(ctx context.Context, _ string) (eventlog.Log, error) {
		l, err := pglog.Open(ctx, dsn, pglog.Options{})
		if err != nil {
			return nil, err
		}
		return l, nil
	}, true)
}

// zerociPeer publishes through pub with hubclient.Publish and follows
// through sub with hubclient.Follow.
func zerociPeer(pub, sub transport.Transport) *peer {
	return &peer{
		publish: func(ctx context.Context, ev contracts.Event) error {
			res, err := hubclient.Publish(ctx, pub, ev)
			if err != nil {
				return err
			}
			if res.Duplicate {
				return fmt.Errorf("event %s was taken for a duplicate of seq %d", ev.ID, res.Seq)
			}
			return nil
		},
		follow: func(ctx context.Context, got func(string)) error {
			head, err := hubclient.Read(ctx, sub, contracts.ReadEvents{Limit: 1})
			if err != nil {
				return fmt.Errorf("read the hub's head: %w", err)
			}
			err = hubclient.Follow(ctx, sub, head.Head, func(ev contracts.Event) error {
				got(ev.ID.String())
				return nil
			})
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow: %w", err)
		},
	}
}

// runContext is the context of one measured run.
func runContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	tb.Cleanup(cancel)
	return ctx
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}
