// Package inproc is the in-process transport: modules that share a process
// talk over Go locks and queues, with no serialization and no sockets, and
// with the same semantics as the cross-process transport (see package
// transport): data is copied at the boundary, each subscription has its own
// bounded queue with explicit gaps, requests are load-balanced over replicas.
//
// A Network is one bus; each Node is one "process" on it. Nodes of one
// Network see each other's subscriptions and services; Networks are
// independent, so a test can run several side by side.
package inproc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/internal/subq"
)

// Network is one in-process bus. The zero value is not usable: call
// NewNetwork. Safe for concurrent use.
type Network struct {
	subs subIndex

	svcMu  sync.Mutex
	groups map[string]*group // service name -> replicas; guarded by svcMu
}

// NewNetwork returns an empty bus.
func NewNetwork() *Network {
	return &Network{
		subs:   subIndex{byPrefix: make(map[string][]*subscription)},
		groups: make(map[string]*group),
	}
}

// Node returns a new node ("a process") on the network. Closing it removes
// its subscriptions and replicas from the network; other nodes are not
// affected.
func (n *Network) Node() transport.Transport {
	return &node{
		net:      n,
		done:     make(chan struct{}),
		subs:     make(map[*subscription]struct{}),
		services: make(map[*replica]struct{}),
	}
}

// node is one Transport. Safe for concurrent use.
type node struct {
	net  *Network
	done chan struct{} // closed by Close

	closed atomic.Bool

	mu            sync.Mutex
	closing       bool
	subs          map[*subscription]struct{}
	services      map[*replica]struct{}
	droppedClosed uint64 // Dropped of subscriptions already closed

	published atomic.Uint64
	delivered atomic.Uint64
	requests  atomic.Uint64
	served    atomic.Uint64
}

var _ transport.Transport = (*node)(nil)

// errClosed wraps transport.ErrClosed with the operation that saw it.
func errClosed(op string) error { return fmt.Errorf("inproc: %s: %w", op, transport.ErrClosed) }

// Publish copies data into the queue of every matching subscription on the
// network. It never blocks: a full queue drops the message for that
// subscription only (it sees a *transport.MissedError).
func (n *node) Publish(ctx context.Context, topic string, data []byte) error {
	if n.closed.Load() {
		return errClosed("publish")
	}
	// The hot path checks what transport.ValidateName checks, with a
	// vectorised NUL search; ValidateName words the error.
	if len(topic) == 0 || len(topic) > transport.MaxNameLen || strings.IndexByte(topic, 0) >= 0 {
		return fmt.Errorf("inproc: publish: topic: %w", transport.ValidateName(topic, false))
	}
	if len(data) > transport.MaxPayload {
		return fmt.Errorf("inproc: publish %q: %d bytes (max %d): %w", topic, len(data), transport.MaxPayload, transport.ErrTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("inproc: publish %q: %w", topic, err)
	}
	n.published.Add(1)
	n.net.subs.publish(topic, data)
	return nil
}

// Subscribe registers a subscription; it is in the network's index, and so
// reached by every later Publish, when Subscribe returns.
func (n *node) Subscribe(ctx context.Context, prefix string, opts ...transport.SubscribeOption) (transport.Subscription, error) {
	if n.closed.Load() {
		return nil, errClosed("subscribe")
	}
	if err := transport.ValidateName(prefix, true); err != nil {
		return nil, fmt.Errorf("inproc: subscribe: prefix: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("inproc: subscribe %q: %w", prefix, err)
	}
	o := transport.ResolveSubscribe(opts)
	s := &subscription{node: n, prefix: prefix, q: subq.New(o.QueueSize)}
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return nil, errClosed("subscribe")
	}
	n.subs[s] = struct{}{}
	n.mu.Unlock()
	if !n.net.subs.add(s) { // closed by a concurrent node Close
		return nil, errClosed("subscribe")
	}
	return s, nil
}

// Stats returns the node's counters.
func (n *node) Stats() transport.Stats {
	n.mu.Lock()
	dropped := n.droppedClosed
	for s := range n.subs {
		dropped += s.q.Dropped()
	}
	n.mu.Unlock()
	return transport.Stats{
		Published: n.published.Load(),
		Delivered: n.delivered.Load(),
		Dropped:   dropped,
		Requests:  n.requests.Load(),
		Served:    n.served.Load(),
	}
}

// Close closes every subscription and replica of the node (their handlers
// are cancelled and waited for; their callers get ErrResponderLost) and
// makes the node's blocked and later calls return ErrClosed. There is
// nothing to flush: Publish has delivered before it returned. Idempotent.
// It must not be called from one of the node's own handlers (it waits for
// them).
func (n *node) Close() error {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return nil
	}
	n.closing = true
	n.closed.Store(true)
	close(n.done)
	subs := make([]*subscription, 0, len(n.subs))
	for s := range n.subs {
		subs = append(subs, s)
	}
	reps := make([]*replica, 0, len(n.services))
	for r := range n.services {
		reps = append(reps, r)
	}
	n.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	for _, r := range reps {
		r.Close()
	}
	return nil
}

// subscription is one Subscription. Next is for one goroutine; Close is safe
// from any.
type subscription struct {
	node   *node
	prefix string
	q      *subq.Queue

	closed bool // guarded by the network's subIndex.mu
	once   sync.Once
}

// Next returns the next message, a *transport.MissedError after a gap,
// transport.ErrClosed after Close, or ctx.Err().
func (s *subscription) Next(ctx context.Context) (transport.Message, error) {
	return s.q.Next(ctx)
}

// Close removes the subscription from the network and unblocks Next. Idempotent.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.node.net.subs.remove(s)
		s.q.Close()
		n := s.node
		n.mu.Lock()
		if _, ok := n.subs[s]; ok {
			delete(n.subs, s)
			n.droppedClosed += s.q.Dropped()
		}
		n.mu.Unlock()
	})
	return nil
}

// deliver copies data into the subscription's queue.
func (s *subscription) deliver(topic string, data []byte) {
	d := make([]byte, len(data))
	copy(d, data)
	if s.q.Push(transport.Message{Topic: topic, Data: d}) {
		s.node.delivered.Add(1)
	}
}

// subIndex finds the subscriptions matching a topic. Subscriptions are
// grouped by prefix; a publish looks up topic[:L] for each distinct prefix
// length L, so its cost grows with the number of distinct prefix lengths
// (at most MaxNameLen+1) and of matching subscriptions, not with the total
// number of subscriptions. Publishers share a read lock; pushes never block,
// so holding it while delivering is cheap. Subscribe and unsubscribe copy
// only their prefix's slice, so a publish in progress keeps a stable view.
type subIndex struct {
	mu       sync.RWMutex
	byPrefix map[string][]*subscription // copy-on-write slices
	lenCount [transport.MaxNameLen + 1]int
	lengths  []int // distinct prefix lengths in use, ascending
}

func (x *subIndex) publish(topic string, data []byte) {
	x.mu.RLock()
	for _, l := range x.lengths {
		if l > len(topic) {
			break
		}
		for _, s := range x.byPrefix[topic[:l]] {
			s.deliver(topic, data)
		}
	}
	x.mu.RUnlock()
}

// add inserts s unless it was already closed.
func (x *subIndex) add(s *subscription) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if s.closed {
		return false
	}
	old := x.byPrefix[s.prefix]
	subs := make([]*subscription, len(old), len(old)+1)
	copy(subs, old)
	x.byPrefix[s.prefix] = append(subs, s)
	l := len(s.prefix)
	x.lenCount[l]++
	if x.lenCount[l] == 1 {
		x.rebuildLengths()
	}
	return true
}

// remove deletes s (if present) and marks it closed so add refuses it.
func (x *subIndex) remove(s *subscription) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s.closed = true
	old := x.byPrefix[s.prefix]
	i := 0
	for i < len(old) && old[i] != s {
		i++
	}
	if i == len(old) {
		return
	}
	if len(old) == 1 {
		delete(x.byPrefix, s.prefix)
	} else {
		subs := make([]*subscription, 0, len(old)-1)
		subs = append(subs, old[:i]...)
		x.byPrefix[s.prefix] = append(subs, old[i+1:]...)
	}
	l := len(s.prefix)
	x.lenCount[l]--
	if x.lenCount[l] == 0 {
		x.rebuildLengths()
	}
}

// rebuildLengths recomputes lengths. Called with mu held for writing.
func (x *subIndex) rebuildLengths() {
	ls := make([]int, 0, len(x.lengths)+1)
	for l, c := range x.lenCount {
		if c > 0 {
			ls = append(ls, l)
		}
	}
	x.lengths = ls
}
