package zmq

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"go.uber.org/goleak"
)

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noLeaks checks, after every cleanup of the test has run, that the test
// left no goroutine behind.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// rawPeer is a bare zmq4 DEALER that speaks the wire format by hand.
type rawPeer struct {
	sock zmq4.Socket
	in   chan [][]byte
}

func dialRaw(t *testing.T, ep string) *rawPeer {
	t.Helper()
	sock := zmq4.NewDealer(context.Background(), zmq4.WithTimeout(time.Second))
	if err := sock.Dial(internalEndpoint(ep)); err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{sock: sock, in: make(chan [][]byte, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := sock.Recv()
			if err != nil {
				return
			}
			p.in <- m.Frames
		}
	}()
	t.Cleanup(func() { sock.Close(); <-done })
	return p
}

func (p *rawPeer) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := p.sock.Send(zmq4.NewMsg(frame)); err != nil {
		t.Fatal(err)
	}
}

// gotReply reports whether anything came back within d.
func (p *rawPeer) gotReply(d time.Duration) bool {
	select {
	case <-p.in:
		return true
	case <-time.After(d):
		return false
	}
}

func TestReplayForgeryAndStaleness(t *testing.T) {
	noLeaks(t)
	hub, err := New(Config{Key: testKey(), Bind: []string{"tcp://127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ep := hub.Endpoints()[0]
	peer := dialRaw(t, ep)

	s := newSealer(testKey(), newSessionID())
	ping, _ := s.seal([]record{{kind: kPing}})
	peer.send(t, ping)
	if !peer.gotReply(5 * time.Second) {
		t.Fatal("a signed ping got no answer")
	}
	for peer.gotReply(50 * time.Millisecond) { // drain welcome/pong
	}

	// The same packet again is a replay.
	peer.send(t, ping)
	eventually(t, 5*time.Second, "replay counted", func() bool { return hub.Stats().Replayed == 1 })
	if peer.gotReply(100 * time.Millisecond) {
		t.Fatal("a replayed packet was answered")
	}

	// A forged packet: right shape, signed with another key.
	forged, _ := newSealer([]byte("not the cluster key, not at all!"), newSessionID()).seal([]record{{kind: kPing}})
	peer.send(t, forged)
	// A signed packet altered in flight.
	tampered, _ := s.seal([]record{{kind: kPing}})
	tampered[headerLen-1] ^= 1
	peer.send(t, tampered)
	// Unsigned garbage.
	peer.send(t, []byte("hello?"))
	eventually(t, 5*time.Second, "auth failures counted", func() bool { return hub.Stats().AuthFailures == 3 })
	if peer.gotReply(100 * time.Millisecond) {
		t.Fatal("an unauthenticated packet was answered")
	}

	// A correctly signed packet sent long ago (captured and replayed later).
	old := newSealer(testKey(), newSessionID())
	stale, _ := old.seal([]record{{kind: kPing}})
	binary.BigEndian.PutUint64(stale[25:33], uint64(time.Now().Add(-time.Minute).UnixNano()))
	resign(stale)
	peer.send(t, stale)
	eventually(t, 5*time.Second, "stale packet counted", func() bool { return hub.Stats().Replayed == 2 })

	// A signed packet with a bad record is malformed, and dropped whole.
	bad, _ := s.seal([]record{{kind: kSub, body: []byte{1}}})
	peer.send(t, bad)
	eventually(t, 5*time.Second, "malformed counted", func() bool { return hub.Stats().Malformed >= 1 })
}

// resign recomputes a packet's MAC after a test edited its header.
func resign(p []byte) {
	s := newSealer(testKey(), sessionID{})
	s.mac.Reset()
	s.mac.Write(p[:len(p)-macLen])
	copy(p[len(p)-macLen:], s.mac.Sum(nil))
}

func TestGuardRefusesHugeFramesAndStalledHandshakes(t *testing.T) {
	noLeaks(t)
	hub, err := New(Config{Key: testKey(), Bind: []string{"tcp://127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	addr := strings.TrimPrefix(hub.Endpoints()[0], "tcp://")

	// A peer that connects and never greets must not stall later accepts.
	staller, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer staller.Close()

	// A peer that greets, then claims a 1 TiB frame.
	huge, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer huge.Close()
	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10] = 0xff, 0x7f, 3
	copy(greeting[12:], "NULL")
	hdr := []byte{0x02, 0, 0, 1, 0, 0, 0, 0, 0}
	if _, err := huge.Write(append(greeting, hdr...)); err != nil {
		t.Fatal(err)
	}
	// The guard closes that connection instead of allocating.
	_ = huge.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := huge.Read(buf); err != nil {
			break
		}
	}

	// A legitimate client still gets through, while the staller is connected.
	node, err := New(Config{Key: testKey(), Routes: map[string]string{"*": hub.Endpoints()[0]}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	svc, err := node.Serve("ok", func(context.Context, []byte) ([]byte, error) { return []byte("ok"), nil })
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	eventually(t, 10*time.Second, "the replica registered past the staller", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rep, err := node.Request(ctx, "ok", nil)
		return err == nil && string(rep) == "ok"
	})
}

func TestIPCSocketModeAndStaleFile(t *testing.T) {
	noLeaks(t)
	dir, err := os.MkdirTemp("", "zci")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "hub.sock")

	// A socket file left behind by a crashed process.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	hub, err := New(Config{Bind: []string{"ipc://" + path}})
	if err != nil {
		t.Fatalf("stale socket file not cleaned: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("ipc socket mode %v, want 0600", fi.Mode().Perm())
	}
	// A live socket is not stolen.
	if _, err := New(Config{Bind: []string{"ipc://" + path}}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("binding a live socket: %v", err)
	}
	// A regular file is never removed.
	reg := filepath.Join(dir, "file")
	os.WriteFile(reg, []byte("x"), 0o600)
	if _, err := New(Config{Bind: []string{"ipc://" + reg}}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("binding over a regular file: %v", err)
	}
	hub.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after Close: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	long := "ipc:///tmp/" + strings.Repeat("x", 120)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Bind: []string{"tcp://0.0.0.0:0"}}, "cluster key is required"},
		{Config{Bind: []string{"tcp://10.1.2.3:7301"}}, "cluster key is required"},
		{Config{Bind: []string{"udp://127.0.0.1:1"}}, "scheme must be"},
		{Config{Bind: []string{"tcp://127.0.0.1"}}, "want tcp://host:port"},
		{Config{Bind: []string{"ipc://relative"}}, "absolute"},
		{Config{Bind: []string{long}}, "limit is 107"},
		{Config{Bind: []string{"inproc://"}}, "want inproc://name"},
		{Config{Routes: map[string]string{"x": "http://a"}}, "route"},
		{Config{Bus: "nope"}, "bus"},
		{Config{Routes: map[string]string{"*": "tcp://127.0.0.1:0"}}, "port 0 can be bound, not dialled"},
		{Config{Bus: "tcp://10.1.2.3:7301"}, "required to reach a non-loopback"},
		{Config{Key: testKey(), HeartbeatInterval: time.Second, HeartbeatTimeout: time.Second}, "at least twice the interval"},
	} {
		n, err := New(tc.cfg)
		if err == nil {
			n.Close()
			t.Errorf("%+v: no error, want %q", tc.cfg, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %q, want %q", tc.cfg, err, tc.want)
		}
	}
	// Loopback tcp without a key is allowed.
	n, err := New(Config{Bind: []string{"tcp://127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if !errors.Is(func() error { _, err := New(Config{Bind: []string{"tcp://0.0.0.0:0"}}); return err }(), ErrNoKey) {
		t.Fatal("want ErrNoKey")
	}
	// A node binding port 0 may route to that same endpoint (it is its own).
	n, err = New(Config{Bind: []string{"tcp://127.0.0.1:0"}, Routes: map[string]string{"*": "tcp://127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
}
