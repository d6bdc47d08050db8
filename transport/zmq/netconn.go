package zmq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
	ztransport "github.com/go-zeromq/zmq4/transport"
)

// zmq4 reads a ZMTP frame by allocating whatever size its header claims, and
// performs the handshake in its accept loop with no deadline: one peer could
// crash the process with a huge frame header or stall every later accept by
// never finishing its greeting. zeroci therefore dials and listens through its
// own zmq4 transports, which wrap each net.Conn in a guard that parses the
// ZMTP framing as it is read, refuses frames over maxPacket, bounds the
// handshake and every write by a deadline, and (for ipc) binds the socket file
// safely with mode 0600.
const (
	guardTCP = "zcitcp"
	guardIPC = "zciipc"

	handshakeTimeout = 2 * time.Second
	writeTimeout     = 10 * time.Second
	maxIPCPath       = 107 // sun_path is 108 bytes including the NUL
)

var errFrameTooLarge = errors.New("zmq: ZMTP frame over the size limit")

func init() {
	// Registration happens once per process, before any socket exists.
	for name, t := range map[string]ztransport.Transport{
		guardTCP:    guardTransport{network: "tcp"},
		guardIPC:    guardTransport{network: "unix"},
		guardInproc: inprocTransport{},
	} {
		if err := zmq4.RegisterTransport(name, t); err != nil {
			panic(err)
		}
	}
}

// internalEndpoint maps a user endpoint to the guarded zmq4 transport.
func internalEndpoint(ep string) string {
	switch {
	case len(ep) > 6 && ep[:6] == "tcp://":
		return guardTCP + "://" + ep[6:]
	case len(ep) > 6 && ep[:6] == "ipc://":
		return guardIPC + "://" + ep[6:]
	case len(ep) > 9 && ep[:9] == "inproc://":
		return guardInproc + "://" + ep[9:]
	}
	return ep
}

type guardTransport struct{ network string }

func (g guardTransport) Dial(ctx context.Context, d ztransport.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, g.network, addr)
	if err != nil {
		return nil, err
	}
	return newGuardConn(c), nil
}

func (g guardTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	var (
		l   net.Listener
		err error
	)
	if g.network == "unix" {
		l, err = listenIPC(addr)
	} else {
		l, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	return &guardListener{Listener: l, conns: make(map[*guardConn]struct{})}, nil
}

func (g guardTransport) Addr(ep string) (string, error) {
	if g.network == "unix" {
		return ep, nil
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return "", err
	}
	if port == "" || port == "*" {
		port = "0"
	}
	if host == "" || host == "*" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, port), nil
}

// listenIPC binds a Unix socket at path with mode 0600 and no window in which
// it is open to others: it binds inside a fresh 0700 directory next to path,
// sets the mode, then renames the socket into place. A socket file left by a
// crashed process is removed first, but only if nothing answers on it.
func listenIPC(path string) (net.Listener, error) {
	if len(path) > maxIPCPath {
		return nil, fmt.Errorf("zmq: ipc path is %d bytes, the limit is %d: %s", len(path), maxIPCPath, path)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".zci")
	if err != nil {
		return nil, fmt.Errorf("zmq: ipc: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("zmq: ipc: %w", err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the final path is removed by Close below
	if err := os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, path)
		if err == nil {
			return &ipcListener{UnixListener: ul, path: path}, nil
		}
	}
	ul.Close()
	return nil, fmt.Errorf("zmq: ipc: bind %s: %w", path, err)
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("zmq: ipc: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("zmq: ipc: %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("zmq: ipc: %s: address already in use by a live process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("zmq: ipc: remove stale socket %s: %w", path, err)
	}
	return nil
}

type ipcListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *ipcListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

// guardListener wraps accepted connections in guards and closes those still
// open when it closes, so an accept stuck in a handshake ends with it.
type guardListener struct {
	net.Listener
	mu     sync.Mutex
	closed bool
	conns  map[*guardConn]struct{}
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := newGuardConn(c)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[gc] = struct{}{}
	gc.onClose = func() { l.mu.Lock(); delete(l.conns, gc); l.mu.Unlock() }
	l.mu.Unlock()
	return gc, nil
}

func (l *guardListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[*guardConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return err
}

// guardConn parses the inbound ZMTP stream: a 64-byte greeting, then frames
// of flags (1) | size (1, or 8 when the LONG bit is set) | body.
type guardConn struct {
	net.Conn
	onClose   func()
	closeOnce sync.Once

	greetLeft int    // greeting bytes still to read
	hdr       []byte // partial frame header
	hdrWant   int    // header length once the flags byte is known
	bodyLeft  uint64 // body bytes still to read in the current frame
	handshake bool   // true until the first command frame has been read
	isCommand bool
}

func newGuardConn(c net.Conn) *guardConn {
	g := &guardConn{Conn: c, greetLeft: 64, handshake: true, hdr: make([]byte, 0, 9)}
	_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	return g
}

func (g *guardConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n > 0 {
		if ferr := g.scan(p[:n]); ferr != nil {
			g.Close()
			return 0, ferr
		}
	}
	return n, err
}

func (g *guardConn) scan(b []byte) error {
	for len(b) > 0 {
		switch {
		case g.greetLeft > 0:
			k := min(g.greetLeft, len(b))
			g.greetLeft -= k
			b = b[k:]
		case g.bodyLeft > 0:
			k := uint64(len(b))
			if k > g.bodyLeft {
				k = g.bodyLeft
			}
			g.bodyLeft -= k
			b = b[k:]
			if g.bodyLeft == 0 {
				g.frameDone()
			}
		default:
			g.hdr = append(g.hdr, b[0])
			b = b[1:]
			if len(g.hdr) == 1 {
				g.hdrWant = 2
				if g.hdr[0]&0x02 != 0 { // LONG
					g.hdrWant = 9
				}
				g.isCommand = g.hdr[0]&0x04 != 0
			}
			if len(g.hdr) < g.hdrWant {
				continue
			}
			var size uint64
			if g.hdrWant == 9 {
				size = binary.BigEndian.Uint64(g.hdr[1:9])
			} else {
				size = uint64(g.hdr[1])
			}
			g.hdr = g.hdr[:0]
			if size > maxPacket {
				return fmt.Errorf("%w: %d bytes", errFrameTooLarge, size)
			}
			g.bodyLeft = size
			if size == 0 {
				g.frameDone()
			}
		}
	}
	return nil
}

func (g *guardConn) frameDone() {
	if g.handshake && g.isCommand {
		g.handshake = false
		_ = g.Conn.SetReadDeadline(time.Time{})
	}
}

func (g *guardConn) Write(p []byte) (int, error) {
	_ = g.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return g.Conn.Write(p)
}

func (g *guardConn) Close() error {
	err := g.Conn.Close()
	g.closeOnce.Do(func() {
		if g.onClose != nil {
			g.onClose()
		}
	})
	return err
}
