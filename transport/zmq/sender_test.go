package zmq

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
)

// countingSocket is a zmq4.Socket whose Send only counts; the sender uses
// nothing else.
type countingSocket struct {
	zmq4.Socket
	sends atomic.Int64
}

func (c *countingSocket) Send(zmq4.Msg) error {
	c.sends.Add(1)
	time.Sleep(50 * time.Microsecond) // a syscall's worth
	return nil
}

// An inline flush sends one batch and leaves the rest to the writer
// goroutine: a goroutine that flushes (the broker's reader does, after every
// packet) is never captured by producers that keep queueing. Captured, the
// broker's reader once stopped reading the credit its subscribers returned.
func TestInlineFlushIsBounded(t *testing.T) {
	noLeaks(t)
	sock := &countingSocket{}
	s := newSender(sock, false, newSealer(testKey(), newSessionID()))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // a producer that never pauses
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.push("", record{kind: kPing})
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// No writer goroutine yet: the inline caller is the only sender.
	for i := 0; i < 5; i++ {
		eventually(t, 5*time.Second, "records queued", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.q) > 0
		})
		done := make(chan struct{})
		go func() { s.flush(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("an inline flush did not return while a producer kept queueing")
		}
	}
	// The rest is the writer goroutine's: it was woken and keeps sending.
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { defer wg.Done(); s.run(ctx) }()
	defer cancel()
	before := sock.sends.Load()
	eventually(t, 5*time.Second, "the writer goroutine sending the rest", func() bool { return sock.sends.Load() > before+10 })
}
