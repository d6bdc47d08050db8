package zmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	ztransport "github.com/go-zeromq/zmq4/transport"
)

// zmq4's own inproc transport hands each Write to the reader as one chunk and
// drops what does not fit the reader's buffer; zmq4 reads a long frame
// header in two reads, so every frame over 255 bytes corrupts the stream
// (measured: a makeslice panic in zmq4's reader). zeroci's inproc:// goes
// through this transport instead: an in-memory byte stream per direction. It
// is buffered (both ZMTP greetings are written before either is read, which
// deadlocks a synchronous net.Pipe); the protocol's own windows and credits
// bound what can be queued in it.

const guardInproc = "zciinproc"

// inprocListeners is the process's inproc namespace. Like ZeroMQ's inproc,
// an inproc:// name is visible to the whole process, so this registry is
// process-wide by definition.
var inprocListeners = struct {
	sync.Mutex
	m map[string]*inprocListener
}{m: make(map[string]*inprocListener)}

type inprocTransport struct{}

type inprocAddr string

func (a inprocAddr) Network() string { return "inproc" }
func (a inprocAddr) String() string  { return string(a) }

type inprocListener struct {
	name   string
	conns  chan *streamConn
	done   chan struct{}
	closed sync.Once

	mu       sync.Mutex
	isClosed bool
	accepted []*streamConn // closed with the listener, like guardListener's
}

func (inprocTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	inprocListeners.Lock()
	defer inprocListeners.Unlock()
	if _, ok := inprocListeners.m[addr]; ok {
		return nil, fmt.Errorf("zmq: inproc://%s: address already in use", addr)
	}
	l := &inprocListener{name: addr, conns: make(chan *streamConn), done: make(chan struct{})}
	inprocListeners.m[addr] = l
	return l, nil
}

func (inprocTransport) Dial(ctx context.Context, _ ztransport.Dialer, addr string) (net.Conn, error) {
	inprocListeners.Lock()
	l := inprocListeners.m[addr]
	inprocListeners.Unlock()
	if l == nil {
		return nil, fmt.Errorf("zmq: inproc://%s: connection refused", addr)
	}
	c1, c2 := newStreamPipe(addr)
	select {
	case l.conns <- c2:
		return c1, nil
	case <-l.done:
	case <-ctx.Done():
	}
	c1.Close()
	c2.Close()
	return nil, fmt.Errorf("zmq: inproc://%s: connection refused", addr)
}

func (inprocTransport) Addr(ep string) (string, error) { return ep, nil }

func (l *inprocListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.isClosed {
			c.Close() // select picked the conn over done: refuse it
			return nil, net.ErrClosed
		}
		l.accepted = append(l.accepted, c)
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *inprocListener) Close() error {
	l.closed.Do(func() {
		inprocListeners.Lock()
		if inprocListeners.m[l.name] == l {
			delete(inprocListeners.m, l.name)
		}
		inprocListeners.Unlock()
		close(l.done)
		l.mu.Lock()
		l.isClosed = true
		for _, c := range l.accepted {
			c.Close()
		}
		l.accepted = nil
		l.mu.Unlock()
	})
	return nil
}

func (l *inprocListener) Addr() net.Addr { return inprocAddr(l.name) }

// streamBuf is one direction of a stream pipe.
type streamBuf struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte // unread bytes are buf[off:]
	off    int
	closed bool
}

func newStreamBuf() *streamBuf {
	b := &streamBuf{}
	b.cond.L = &b.mu
	return b
}

func (b *streamBuf) close() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// streamConn is one end of an in-memory byte stream. Reads block until
// data arrives or either end closes; writes copy and never block.
type streamConn struct {
	name string
	r, w *streamBuf
	once sync.Once
}

func newStreamPipe(name string) (*streamConn, *streamConn) {
	a, b := newStreamBuf(), newStreamBuf()
	return &streamConn{name: name, r: a, w: b}, &streamConn{name: name, r: b, w: a}
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	b := c.r
	for b.off == len(b.buf) {
		if b.closed {
			return 0, io.EOF
		}
		b.cond.Wait()
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0 // drained: reuse from the start
	}
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.w.closed {
		return 0, io.ErrClosedPipe
	}
	b := c.w
	if b.off > 0 && len(b.buf)+len(p) > cap(b.buf) {
		// Slide the unread bytes down instead of growing: a lagging reader
		// must not make every write copy the whole backlog.
		b.buf = b.buf[:copy(b.buf, b.buf[b.off:])]
		b.off = 0
	}
	b.buf = append(b.buf, p...)
	b.cond.Broadcast()
	return len(p), nil
}

// Close ends both directions: the peer reads what was written, then EOF.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.r.close()
		c.w.close()
	})
	return nil
}

var errNoDeadline = errors.New("zmq: inproc streams do not support deadlines")

func (c *streamConn) LocalAddr() net.Addr              { return inprocAddr(c.name) }
func (c *streamConn) RemoteAddr() net.Addr             { return inprocAddr(c.name) }
func (c *streamConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *streamConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *streamConn) SetWriteDeadline(time.Time) error { return errNoDeadline }
