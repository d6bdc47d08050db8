// Package moduletest hosts modules in tests: a modules.Host over any
// transport, and helpers to start a module and stop it when the test ends.
package moduletest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/zmq"
)

// Host is a modules.Host for tests.
type Host struct {
	TR  transport.Transport
	Log zerolog.Logger
	Dir string
}

// Transport implements modules.Host.
func (h Host) Transport() transport.Transport { return h.TR }

// Logger implements modules.Host.
func (h Host) Logger() zerolog.Logger { return h.Log }

// DataDir implements modules.Host.
func (h Host) DataDir() string { return h.Dir }

// Logger returns a logger that writes to t.Log at warn level and above.
func Logger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// Start starts m on host and registers its Stop as a cleanup (which
// reports a failing Stop). It returns a stop func that is safe to call
// earlier (idempotent), to test a restart.
func Start(t testing.TB, m modules.Module, host modules.Host) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx, host); err != nil {
		t.Fatalf("start %s: %v", m.Name(), err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", m.Name(), err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// ZMQPair binds a ZeroMQ broker at ep on one node (the module's) and links
// a second node (the client's) to it; both close when the test ends. A
// tcp endpoint with port 0 gets a free port first. Every service and the
// bus go through that one broker.
func ZMQPair(t testing.TB, ep string) (srv, client transport.Transport) {
	t.Helper()
	if strings.HasPrefix(ep, "tcp://") && strings.HasSuffix(ep, ":0") {
		// Learn the port, then bind again with routes to itself.
		n, err := zmq.New(zmq.Config{Bind: []string{ep}})
		if err != nil {
			t.Fatal(err)
		}
		ep = n.Endpoints()[0]
		n.Close()
	}
	s, err := zmq.New(zmq.Config{Bind: []string{ep}, Routes: map[string]string{"*": ep}, Bus: ep})
	if err != nil {
		t.Fatal(err)
	}
	c, err := zmq.New(zmq.Config{Routes: map[string]string{"*": ep}, Bus: ep})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s, c
}

// Context returns a context that ends after d or with the test.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
