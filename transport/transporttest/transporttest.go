// Package transporttest is the conformance suite every transport
// implementation runs (modelled on Watermill's pubsub/tests and
// x/net/nettest): an implementation's test calls TestTransport with its
// Features and a constructor for clusters of its nodes.
//
//	func TestConformance(t *testing.T) {
//		transporttest.TestTransport(t, transporttest.Features{}, newCluster)
//	}
//
// Each subtest builds its own cluster, and checks at the end, after the
// cluster's cleanup closed every node, that no goroutine was leaked.
// Subtests run one after the other. Counts are chosen so the whole suite
// takes seconds; with -race the message counts of the throughput-heavy tests
// are reduced (each test says by how much).
package transporttest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/transport"
)

// Features says which optional groups of tests apply to an implementation.
type Features struct {
	// CrossProcess: messages cross a wire, so the wrong-key, garbage-bytes,
	// truncated and huge frame tests run.
	CrossProcess bool
	// Restart: the hub can be restarted at the same address, so the peer
	// restart and reconnection tests run.
	Restart bool
}

// Cluster builds the nodes of one cluster. The hub is the node where service
// endpoints are bound and the pub/sub broker runs (for inproc all nodes are
// equal). Other nodes behave like separate processes. Every node a Cluster
// returns is closed by the cluster at the test's cleanup (t.Cleanup); a test
// may close one earlier, so Close must stay idempotent.
type Cluster interface {
	// Hub is created on first call and is the same node afterwards (until
	// RestartHub).
	Hub(t testing.TB) transport.Transport
	// Node returns a new node. It may be called before Hub: the cluster
	// starts the hub first if the node needs one.
	Node(t testing.TB) transport.Transport
	// NodeWithKey returns a node using another cluster key (CrossProcess only).
	NodeWithKey(t testing.TB, key []byte) transport.Transport
	// RestartHub closes the hub and starts a new one at the same address
	// (Restart only). Hub returns the new one afterwards.
	RestartHub(t testing.TB) transport.Transport
	// Endpoint is the hub's dialable endpoint: "tcp://127.0.0.1:PORT",
	// "ipc:///path", "inproc://name", or "" for in-process.
	Endpoint() string
}

// NewCluster makes an empty cluster for one subtest.
type NewCluster func(t testing.TB) Cluster

// Timeouts. Anything that should happen "at once" gets waitTimeout before the
// test fails: long enough for -race on two busy cores, short enough that a
// hang fails the suite quickly.
const (
	waitTimeout = 10 * time.Second
	pollEvery   = 5 * time.Millisecond
)

// test is one conformance subtest.
type test struct {
	name string
	need func(Features) string // non-empty: skip with this reason
	run  func(t *testing.T, f Features, c Cluster)
}

func needCrossProcess(f Features) string {
	if !f.CrossProcess {
		return "Features.CrossProcess is false: no wire to attack"
	}
	return ""
}

func needRestart(f Features) string {
	if !f.Restart {
		return "Features.Restart is false: the hub cannot be restarted"
	}
	return ""
}

// TestTransport runs the conformance suite. Each subtest gets a fresh cluster
// from newCluster and must leave no goroutine behind once the cluster's
// cleanup has closed its nodes.
func TestTransport(t *testing.T, f Features, newCluster NewCluster) {
	var tests []test
	tests = append(tests, pubSubTests()...)
	tests = append(tests, requestTests()...)
	tests = append(tests, lifecycleTests()...)
	tests = append(tests, wireTests()...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.need != nil {
				if why := tc.need(f); why != "" {
					t.Skip(why)
				}
			}
			ignore := goleak.IgnoreCurrent()
			// Registered first, so it runs last: after the cluster's cleanups.
			t.Cleanup(func() {
				if err := goleak.Find(ignore); err != nil {
					t.Errorf("goroutines left after the cluster's nodes were closed: %v", err)
				}
			})
			tc.run(t, f, newCluster(t))
		})
	}
}

// eventually polls cond until it is true, failing the test with the message
// after timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(pollEvery)
	}
}

// ctxFor returns a context ending after d, cancelled at the test's end.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// recv waits up to d for sub's next entry.
func recv(sub transport.Subscription, d time.Duration) (transport.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return sub.Next(ctx)
}

// mustRecv returns sub's next message, failing on any error or after waitTimeout.
func mustRecv(t testing.TB, sub transport.Subscription, what string) transport.Message {
	t.Helper()
	m, err := recv(sub, waitTimeout)
	if err != nil {
		t.Fatalf("%s: Next: %v", what, err)
	}
	return m
}

// mustSubscribe subscribes or fails.
func mustSubscribe(t testing.TB, tr transport.Transport, prefix string, opts ...transport.SubscribeOption) transport.Subscription {
	t.Helper()
	sub, err := tr.Subscribe(ctxFor(t, waitTimeout), prefix, opts...)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", prefix, err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

// mustPublish publishes or fails.
func mustPublish(t testing.TB, tr transport.Transport, topic string, data []byte) {
	t.Helper()
	if err := tr.Publish(ctxFor(t, waitTimeout), topic, data); err != nil {
		t.Fatalf("Publish(%q, %d bytes): %v", topic, len(data), err)
	}
}

// mustServe registers a replica or fails; it is closed at cleanup.
func mustServe(t testing.TB, tr transport.Transport, service string, h transport.Handler, opts ...transport.ServeOption) transport.Service {
	t.Helper()
	svc, err := tr.Serve(service, h, opts...)
	if err != nil {
		t.Fatalf("Serve(%q): %v", service, err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// request sends one request with a timeout.
func request(tr transport.Transport, d time.Duration, service string, data []byte, opts ...transport.RequestOption) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return tr.Request(ctx, service, data, opts...)
}

// awaitService polls until a request to service succeeds (the replica is
// known to the balancer). Use before tests that need it registered.
func awaitService(t testing.TB, tr transport.Transport, service string, data []byte) {
	t.Helper()
	var last error
	deadline := time.Now().Add(waitTimeout)
	for {
		_, err := request(tr, time.Second, service, data)
		if err == nil {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("service %q never answered within %v; last error: %v", service, waitTimeout, last)
		}
		time.Sleep(pollEvery)
	}
}

// echo is a handler replying "echo:" + request.
func echo(_ context.Context, req []byte) ([]byte, error) {
	return append([]byte("echo:"), req...), nil
}

// missed returns the count of a *transport.MissedError, or ok=false.
func missed(err error) (count uint64, ok bool) {
	var me *transport.MissedError
	if errors.As(err, &me) {
		return me.Count, true
	}
	return 0, false
}

// describe names an error and the sentinels it matches, for failure messages.
func describe(err error) string {
	if err == nil {
		return "<nil>"
	}
	var is []string
	for _, s := range []struct {
		name string
		err  error
	}{
		{"ErrClosed", transport.ErrClosed},
		{"ErrNoResponder", transport.ErrNoResponder},
		{"ErrDeadlineExceeded", transport.ErrDeadlineExceeded},
		{"ErrResponderFailed", transport.ErrResponderFailed},
		{"ErrResponderLost", transport.ErrResponderLost},
		{"ErrMissed", transport.ErrMissed},
		{"ErrTooLarge", transport.ErrTooLarge},
		{"ErrInvalidName", transport.ErrInvalidName},
		{"context.DeadlineExceeded", context.DeadlineExceeded},
		{"context.Canceled", context.Canceled},
	} {
		if errors.Is(err, s.err) {
			is = append(is, s.name)
		}
	}
	return fmt.Sprintf("%q (%T, matches %v)", err.Error(), err, is)
}
