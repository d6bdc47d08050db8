package transporttest

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zeroci/zeroci/transport"
)

func wireTests() []test {
	return []test{
		{name: "Wire/WrongKey", need: needCrossProcess, run: testWrongKey},
		{name: "Wire/Malformed", need: needCrossProcess, run: testMalformed},
	}
}

// testWrongKey: a node with another cluster key gets no replies, cannot
// deliver publishes and receives none; the hub counts AuthFailures.
func testWrongKey(t *testing.T, _ Features, c Cluster) {
	hub := c.Hub(t)
	good := c.Node(t)
	var handled atomic.Int32
	mustServe(t, hub, "auth-svc", func(_ context.Context, req []byte) ([]byte, error) {
		if string(req) != "ping" {
			handled.Add(1)
		}
		return []byte("secret reply"), nil
	})
	awaitService(t, good, "auth-svc", []byte("ping"))
	goodSub := mustSubscribe(t, good, "auth.")
	before := hub.Stats().AuthFailures

	bad := c.NodeWithKey(t, []byte("not-the-cluster-key-0123456789abcdef"))
	reply, err := request(bad, time.Second, "auth-svc", []byte("forged request"))
	if err == nil || !(errors.Is(err, transport.ErrDeadlineExceeded) || errors.Is(err, transport.ErrNoResponder)) {
		t.Errorf("request from a wrong-key node: reply %q, %s; want ErrDeadlineExceeded or ErrNoResponder", reply, describe(err))
	}
	// A wrong-key node may never get its subscription confirmed: Subscribe
	// may fail (here after 2s) instead of returning a deaf subscription.
	badSub, subErr := bad.Subscribe(ctxFor(t, 2*time.Second), "auth.")
	if subErr == nil {
		t.Cleanup(func() { badSub.Close() })
	}
	// Publish errors are allowed: a wrong-key node may learn it is refused.
	_ = bad.Publish(ctxFor(t, 2*time.Second), "auth.forged", []byte("forged"))
	eventually(t, waitTimeout, func() bool { return hub.Stats().AuthFailures > before },
		"hub Stats().AuthFailures stayed at %d after a wrong-key node sent a request and a publish", before)
	if n := handled.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for a wrong-key node", n)
	}

	mustPublish(t, good, "auth.ok", []byte("genuine"))
	m := mustRecv(t, goodSub, "genuine publish")
	if m.Topic != "auth.ok" {
		t.Fatalf("a good subscription received %q (%q): a wrong-key node's publish was delivered", m.Topic, m.Data)
	}
	if m, err := recv(goodSub, 300*time.Millisecond); err == nil {
		t.Fatalf("a good subscription received an extra %q (%q)", m.Topic, m.Data)
	}
	if subErr == nil {
		for {
			m, err := recv(badSub, 500*time.Millisecond)
			if err == nil {
				t.Fatalf("a wrong-key node's subscription received %q (%q)", m.Topic, m.Data)
			}
			if _, ok := missed(err); !ok { // link-loss notices are fine, messages are not
				break
			}
		}
	}
}

// dialAddr turns a "tcp://host:port" or "ipc:///path" endpoint into a
// net.Dial network and address; ok is false for inproc:// and "".
func dialAddr(endpoint string) (network, addr string, ok bool) {
	switch {
	case strings.HasPrefix(endpoint, "tcp://"):
		return "tcp", strings.TrimPrefix(endpoint, "tcp://"), true
	case strings.HasPrefix(endpoint, "ipc://"):
		return "unix", strings.TrimPrefix(endpoint, "ipc://"), true
	}
	return "", "", false
}

// zmtpGreeting is a ZMTP 3.0 greeting for the NULL mechanism: signature
// (0xFF, 8 padding bytes, 0x7F), version 3.0, mechanism "NULL" padded to 20
// bytes, as-server 0, 31 filler bytes: 64 bytes.
func zmtpGreeting() []byte {
	g := make([]byte, 64)
	g[0], g[9] = 0xFF, 0x7F
	g[10], g[11] = 3, 0
	copy(g[12:32], "NULL")
	return g
}

// zmtpReady is a READY command frame announcing a DEALER socket.
func zmtpReady() []byte {
	body := []byte{5}
	body = append(body, "READY"...)
	body = append(body, 11)
	body = append(body, "Socket-Type"...)
	body = binary.BigEndian.AppendUint32(body, 6)
	body = append(body, "DEALER"...)
	return append([]byte{0x04, byte(len(body))}, body...)
}

// longFrameHeader is a frame header with the LONG flag (plus extra flags)
// and an 8-byte big-endian size.
func longFrameHeader(flags byte, size uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{flags | 0x02}, size)
}

// testMalformed: garbage on the hub's endpoint neither crashes the process
// nor stops the hub from serving.
func testMalformed(t *testing.T, _ Features, c Cluster) {
	hub := c.Hub(t)
	good := c.Node(t)
	mustServe(t, hub, "sturdy", echo)
	awaitService(t, good, "sturdy", []byte("warm-up"))
	stillServes := func(after string) {
		t.Helper()
		reply, err := request(good, waitTimeout, "sturdy", []byte(after))
		if err != nil || string(reply) != "echo:"+after {
			t.Fatalf("after %s, a normal request got %q, %s", after, reply, describe(err))
		}
	}
	endpoint := c.Endpoint()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}

	if network, addr, ok := dialAddr(endpoint); ok {
		greeting := zmtpGreeting()
		raw := []struct {
			name  string
			bytes []byte
		}{
			{"random bytes", random(4096)},
			{"truncated greeting", greeting[:30]},
			{"greeting then truncated READY", append(append([]byte{}, greeting...), zmtpReady()[:9]...)},
			{"greeting then huge command frame", append(append([]byte{}, greeting...), longFrameHeader(0x04, 1<<40)...)},
			{"READY then huge message frame", append(append(append([]byte{}, greeting...), zmtpReady()...),
				append(longFrameHeader(0, 1<<40), "only a few bytes"...)...)},
			{"READY then frame size with top bit set", append(append(append([]byte{}, greeting...), zmtpReady()...),
				longFrameHeader(0, 1<<63)...)},
			{"READY then random frames", append(append(append([]byte{}, greeting...), zmtpReady()...), random(2048)...)},
		}
		for _, r := range raw {
			conn, err := net.DialTimeout(network, addr, waitTimeout)
			if err != nil {
				t.Fatalf("%s: dialling %s %s: %v", r.name, network, addr, err)
			}
			conn.SetDeadline(time.Now().Add(waitTimeout))
			if _, err := conn.Write(r.bytes); err != nil {
				t.Logf("%s: write: %v (the hub may have hung up: fine)", r.name, err)
			}
			// Give the hub a moment to read before hanging up: read until it
			// closes the connection or 200ms pass (whatever it answers).
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 512)
			for {
				if _, err := conn.Read(buf); err != nil {
					break
				}
			}
			conn.Close()
			stillServes(r.name)
		}
	} else if !strings.HasPrefix(endpoint, "inproc://") {
		t.Logf("endpoint %q: no raw socket tests", endpoint)
	}

	if endpoint == "" {
		return
	}
	// A real ZeroMQ peer that speaks ZMTP correctly but sends nonsense.
	before := hub.Stats()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dealer := zmq4.NewDealer(ctx, zmq4.WithDialerMaxRetries(20), zmq4.WithTimeout(time.Second))
	defer dealer.Close()
	if err := dealer.Dial(endpoint); err != nil {
		t.Fatalf("zmq4 DEALER dialling %s: %v", endpoint, err)
	}
	sendGarbage := func() {
		frames := make([][]byte, 1+rng.IntN(5))
		for i := range frames {
			frames[i] = random(rng.IntN(300))
		}
		if err := dealer.Send(zmq4.NewMsgFrom(frames...)); err != nil {
			t.Logf("DEALER send: %v", err)
		}
	}
	for i := 0; i < 50; i++ {
		sendGarbage()
	}
	// DEALER drops silently while connecting: keep sending until the hub
	// shows it saw and refused them.
	eventually(t, waitTimeout, func() bool {
		s := hub.Stats()
		if s.Malformed+s.AuthFailures > before.Malformed+before.AuthFailures {
			return true
		}
		sendGarbage()
		return false
	}, "hub Stats().Malformed+AuthFailures stayed at %d+%d while a DEALER sent random multipart messages", before.Malformed, before.AuthFailures)
	if err := dealer.Close(); err != nil {
		t.Logf("DEALER close: %v", err)
	}
	cancel()
	stillServes("random multipart messages from a zmq4 DEALER")
	t.Logf("hub stats after the malformed input: %+v", hub.Stats())
}
