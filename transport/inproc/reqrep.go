package inproc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeroci/zeroci/transport"
)

// group is the set of replicas serving one service, and the requests waiting
// for one of them to have a free slot. Guarded by Network.svcMu.
type group struct {
	name     string
	replicas []*replica
	rr       int       // round-robin start for ties
	waiters  []*waiter // FIFO
}

// pick returns the live replica with the fewest requests in flight and a free
// slot, rotating among equals; nil when every replica is busy.
func (g *group) pick() *replica {
	var best *replica
	bi := 0
	k := len(g.replicas)
	for i := 0; i < k; i++ {
		j := (g.rr + i) % k
		r := g.replicas[j]
		if r.inflight >= r.limit {
			continue
		}
		if best == nil || r.inflight < best.inflight {
			best, bi = r, j
		}
	}
	if best != nil {
		g.rr = (bi + 1) % k
	}
	return best
}

// waiter is a request waiting at the balancer. ch gets nil when its call was
// started on a replica, or an error when it will never be.
type waiter struct {
	c  *call
	ch chan error // capacity 1, written once under svcMu
}

// call is one attempt of a request on one replica. Its outcome is set once
// (finish), by the handler's goroutine, by the replica's Close (lost) or by
// the caller giving up (abandoned); done is closed when it is set.
type call struct {
	service  string
	req      []byte
	deadline time.Time
	hasDL    bool

	ctx    context.Context // the handler's; set by start under svcMu
	cancel context.CancelFunc

	state atomic.Int32 // 0 pending, 1 settled
	done  chan struct{}
	reply []byte
	err   error
	lost  bool
}

// finish settles the call with the result of f, unless it is already
// settled. f runs only for the winner.
func (c *call) finish(f func()) bool {
	if !c.state.CompareAndSwap(0, 1) {
		return false
	}
	f()
	close(c.done)
	return true
}

// replica is one Service: a handler registered on a node.
type replica struct {
	net     *Network
	node    *node
	service string
	h       transport.Handler
	limit   int

	ctx    context.Context // cancelled by Close; parent of handler contexts
	cancel context.CancelFunc
	wg     sync.WaitGroup // handler goroutines

	// Guarded by Network.svcMu.
	inflight int
	closed   bool
	calls    map[*call]struct{}

	closeOnce sync.Once
}

// Serve registers h as one replica of service on the network.
func (n *node) Serve(service string, h transport.Handler, opts ...transport.ServeOption) (transport.Service, error) {
	if n.closed.Load() {
		return nil, errClosed("serve")
	}
	if err := transport.ValidateName(service, false); err != nil {
		return nil, fmt.Errorf("inproc: serve: service: %w", err)
	}
	if h == nil {
		return nil, fmt.Errorf("inproc: serve %q: nil handler", service)
	}
	o := transport.ResolveServe(opts)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{
		net: n.net, node: n, service: service, h: h, limit: o.Concurrency,
		ctx: ctx, cancel: cancel, calls: make(map[*call]struct{}),
	}
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		cancel()
		return nil, errClosed("serve")
	}
	n.services[r] = struct{}{}
	n.mu.Unlock()

	net := n.net
	net.svcMu.Lock()
	if r.closed { // the node closed meanwhile
		net.svcMu.Unlock()
		return nil, errClosed("serve")
	}
	g := net.groups[service]
	if g == nil {
		g = &group{name: service}
		net.groups[service] = g
	}
	g.replicas = append(g.replicas, r)
	net.dispatchLocked(g) // requests waiting for a free slot can use this one
	net.svcMu.Unlock()
	return r, nil
}

// Close unregisters the replica, cancels its handlers, reports
// ErrResponderLost to their callers (who retry idempotent requests) and waits
// for the handlers to return. Idempotent. It must not be called from the
// replica's own handler (it waits for it).
func (r *replica) Close() error {
	r.closeOnce.Do(func() {
		net := r.net
		net.svcMu.Lock()
		r.closed = true
		if g := net.groups[r.service]; g != nil {
			for i, x := range g.replicas {
				if x == r {
					g.replicas = append(g.replicas[:i:i], g.replicas[i+1:]...)
					break
				}
			}
			if len(g.replicas) == 0 {
				for _, w := range g.waiters {
					w.ch <- fmt.Errorf("inproc: request %q: every replica closed: %w", r.service, transport.ErrNoResponder)
				}
				g.waiters = nil
				delete(net.groups, r.service)
			}
		}
		calls := make([]*call, 0, len(r.calls))
		for c := range r.calls {
			calls = append(calls, c)
		}
		net.svcMu.Unlock()

		// Settle the callers first: a handler that returns as soon as its
		// ctx is cancelled must not turn the loss into a RemoteError.
		for _, c := range calls {
			c.finish(func() { c.lost = true })
		}
		r.cancel()
		r.wg.Wait()

		n := r.node
		n.mu.Lock()
		delete(n.services, r)
		n.mu.Unlock()
	})
	return nil
}

// dispatchLocked starts waiting requests on replicas with a free slot, in
// arrival order. Called with svcMu held.
func (net *Network) dispatchLocked(g *group) {
	for len(g.waiters) > 0 {
		r := g.pick()
		if r == nil {
			return
		}
		w := g.waiters[0]
		g.waiters[0] = nil
		g.waiters = g.waiters[1:]
		r.startLocked(w.c)
		w.ch <- nil
	}
	g.waiters = nil // release the backing array once drained
}

// startLocked runs c on r in a new goroutine owned by r. Called with svcMu held.
func (r *replica) startLocked(c *call) {
	if c.hasDL {
		c.ctx, c.cancel = context.WithDeadline(r.ctx, c.deadline)
	} else {
		c.ctx, c.cancel = context.WithCancel(r.ctx)
	}
	r.inflight++
	r.calls[c] = struct{}{}
	r.wg.Add(1)
	go r.run(c)
}

// run calls the handler and settles c with its outcome, then frees the slot.
func (r *replica) run(c *call) {
	defer r.wg.Done()
	reply, err := r.invoke(c)
	r.node.served.Add(1)
	c.finish(func() {
		switch {
		case c.hasDL && !time.Now().Before(c.deadline):
			// Too late: the caller's deadline passed before the reply came.
			c.err = fmt.Errorf("inproc: request: %w", &transport.DeadlineError{Service: r.service})
		case err != nil:
			c.err = &transport.RemoteError{Service: r.service, Message: err.Error()}
		case len(reply) > transport.MaxPayload:
			c.err = &transport.RemoteError{Service: r.service, Message: fmt.Sprintf(
				"reply of %d bytes is over transport.MaxPayload (%d)", len(reply), transport.MaxPayload)}
		default:
			c.reply = make([]byte, len(reply))
			copy(c.reply, reply)
		}
	})
	c.cancel()

	net := r.net
	net.svcMu.Lock()
	delete(r.calls, c)
	r.inflight--
	if !r.closed {
		if g := net.groups[r.service]; g != nil {
			net.dispatchLocked(g)
		}
	}
	net.svcMu.Unlock()
}

// invoke calls the handler, turning a panic into an error.
func (r *replica) invoke(c *call) (reply []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			reply, err = nil, fmt.Errorf("handler panic: %v", p)
		}
	}()
	return r.h(c.ctx, c.req)
}

// Request sends a copy of data to the least busy replica of service and
// waits for its reply (a copy), for the replica's loss, or for ctx or the
// node to end. An Idempotent request whose replica is lost is sent once more
// to another live replica.
func (n *node) Request(ctx context.Context, service string, data []byte, opts ...transport.RequestOption) ([]byte, error) {
	if n.closed.Load() {
		return nil, errClosed("request")
	}
	if err := transport.ValidateName(service, false); err != nil {
		return nil, fmt.Errorf("inproc: request: service: %w", err)
	}
	if len(data) > transport.MaxPayload {
		return nil, fmt.Errorf("inproc: request %q: %d bytes (max %d): %w", service, len(data), transport.MaxPayload, transport.ErrTooLarge)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("inproc: request: %w", transport.CtxError(ctx, service))
	}
	o := transport.ResolveRequest(opts)
	n.requests.Add(1)
	dl, hasDL := ctx.Deadline()
	for attempt := 0; ; attempt++ {
		c := &call{service: service, deadline: dl, hasDL: hasDL, done: make(chan struct{})}
		c.req = make([]byte, len(data)) // a fresh copy per attempt: a handler may have written to the last one
		copy(c.req, data)
		if err := n.acquire(ctx, c); err != nil {
			if attempt > 0 && errors.Is(err, transport.ErrNoResponder) {
				return nil, fmt.Errorf("inproc: request %q: replica lost and no other to retry on: %w", service, transport.ErrResponderLost)
			}
			return nil, err
		}
		select {
		case <-c.done:
			if c.lost {
				if n.closed.Load() {
					// Lost to this node's own Close: n.done is closed
					// first, but when the caller was not yet parked both
					// cases are ready and select may pick this one. A
					// closed node's calls end with ErrClosed, unretried.
					return nil, errClosed("request")
				}
				if o.Idempotent && attempt == 0 {
					continue
				}
				return nil, fmt.Errorf("inproc: request %q: %w", service, transport.ErrResponderLost)
			}
			return c.reply, c.err
		case <-ctx.Done():
			n.abandon(c)
			return nil, fmt.Errorf("inproc: request: %w", transport.CtxError(ctx, service))
		case <-n.done:
			n.abandon(c)
			return nil, errClosed("request")
		}
	}
}

// abandon settles a started call the caller no longer waits for and cancels
// its handler.
func (n *node) abandon(c *call) {
	c.finish(func() {})
	c.cancel()
}

// acquire starts c on a replica of c.service, waiting at the balancer while
// every replica is busy. It returns nil once c runs.
func (n *node) acquire(ctx context.Context, c *call) error {
	net := n.net
	net.svcMu.Lock()
	g := net.groups[c.service]
	if g == nil || len(g.replicas) == 0 {
		net.svcMu.Unlock()
		return fmt.Errorf("inproc: request %q: %w", c.service, transport.ErrNoResponder)
	}
	if len(g.waiters) == 0 { // do not overtake earlier waiters
		if r := g.pick(); r != nil {
			r.startLocked(c)
			net.svcMu.Unlock()
			return nil
		}
	}
	w := &waiter{c: c, ch: make(chan error, 1)}
	g.waiters = append(g.waiters, w)
	net.svcMu.Unlock()

	var stop error
	select {
	case err := <-w.ch:
		return err
	case <-ctx.Done():
		stop = fmt.Errorf("inproc: request: %w", transport.CtxError(ctx, c.service))
	case <-n.done:
		stop = errClosed("request")
	}
	net.svcMu.Lock()
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i:i], g.waiters[i+1:]...)
			net.svcMu.Unlock()
			return stop
		}
	}
	net.svcMu.Unlock()
	// Already answered: started (abandon it) or refused.
	if err := <-w.ch; err == nil {
		n.abandon(c)
	}
	return stop
}
