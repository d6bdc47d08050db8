// Package zmq is the cross-process transport: modules in different
// processes or hosts talk over ZeroMQ sockets (github.com/go-zeromq/zmq4) on
// tcp://, ipc:// or inproc:// endpoints, with the semantics of package
// transport.
//
// # Shape
//
// A Node binds the endpoints of the modules its process hosts; on each it runs
// a broker behind one ROUTER socket. To reach an endpoint it does not bind, a
// Node opens one link: one DEALER socket connected to that one ROUTER, never
// to several peers (zmq4's DEALER copies every message to every peer). The
// broker of the Bus endpoint fans publications out to every subscription in
// the cluster; the broker of a service's endpoint balances its requests over
// the replicas that serve it, in its own process or registered over links.
//
// # Reliability
//
// zmq4 has no heartbeats, no bounded queues, and drops silently; this package
// adds, end to end: heartbeats both ways (a dead peer's replicas stop getting
// requests and its in-flight requests fail or are retried), acknowledged and
// windowed publishes (resent to a restarted broker), credit-based fan-out (the
// broker sends a subscriber only as many messages as its queue can take and
// reports the rest as a gap), and resynchronisation when a broker restarts
// (subscriptions and replicas are re-registered; subscribers are told they
// may have missed messages).
//
// # Security
//
// Every packet is signed with HMAC-SHA256 under the cluster key and carries a
// session, a sequence number and a send time, so forged, unsigned, replayed
// and stale packets are dropped and counted, and their sender gets no answer.
// See wire.go for the format and netconn.go for the connection guard.
package zmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/transport"
)

// ErrNoKey is returned when a node without a cluster key is asked to bind a
// tcp:// endpoint that is not on a loopback address.
var ErrNoKey = errors.New("zmq: a cluster key is required to bind a non-loopback tcp:// endpoint")

// ErrNoKeyDial is returned when a node without a cluster key is configured
// to reach a tcp:// endpoint that is not on a loopback address: its packets
// would cross a network signed with no secret.
var ErrNoKeyDial = errors.New("zmq: a cluster key is required to reach a non-loopback tcp:// endpoint")

// ErrNoRoute is returned when no endpoint is configured for a service or for
// the pub/sub bus.
var ErrNoRoute = errors.New("zmq: no route")

// Config configures a Node.
type Config struct {
	// Key is the cluster key every packet is signed with. Nodes of one
	// cluster must share it. Without one, packets are signed with an empty
	// key, which is accepted only for loopback, ipc and inproc endpoints.
	Key []byte
	// Bind lists the endpoints this node binds and brokers.
	Bind []string
	// Routes maps a service to the endpoint whose broker serves it. A
	// service "a.b" is looked up as "a.b", then "a", then "*".
	Routes map[string]string
	// Bus is the endpoint of the pub/sub broker.
	Bus string
	// Logger receives the node's diagnostics.
	Logger zerolog.Logger

	// HeartbeatInterval is how often a link pings its broker (default
	// 250ms); a peer silent for HeartbeatTimeout (default 2s) is dead.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// PublishWindow and PublishWindowBytes bound unacknowledged publishes
	// per link (default 4096 messages, 16 MiB).
	PublishWindow      int
	PublishWindowBytes int
}

func (c *Config) defaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 250 * time.Millisecond
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 2 * time.Second
	}
	if c.PublishWindow <= 0 {
		c.PublishWindow = 4096
	}
	if c.PublishWindowBytes <= 0 {
		c.PublishWindowBytes = 16 << 20
	}
}

// ValidateEndpoint checks that ep is a tcp://host:port, ipc:///path or
// inproc://name endpoint zeroci can use.
func ValidateEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("zmq: endpoint %q: %w", ep, err)
	}
	switch u.Scheme {
	case "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil || u.Path != "" {
			return fmt.Errorf("zmq: endpoint %q: want tcp://host:port", ep)
		}
	case "ipc":
		p := strings.TrimPrefix(ep, "ipc://")
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("zmq: endpoint %q: want ipc:///absolute/path", ep)
		}
		if len(p) > maxIPCPath {
			return fmt.Errorf("zmq: endpoint %q: socket path is %d bytes, the limit is %d", ep, len(p), maxIPCPath)
		}
	case "inproc":
		if strings.TrimPrefix(ep, "inproc://") == "" {
			return fmt.Errorf("zmq: endpoint %q: want inproc://name", ep)
		}
	default:
		return fmt.Errorf("zmq: endpoint %q: scheme must be tcp, ipc or inproc", ep)
	}
	return nil
}

// checkDialed validates an endpoint the node may dial: a concrete address
// (port 0 means "any" only when binding), and a key for tcp beyond
// loopback. Endpoints the node binds itself are exempt from the port rule.
func checkDialed(cfg Config, ep string) error {
	if err := ValidateEndpoint(ep); err != nil {
		return err
	}
	if !strings.HasPrefix(ep, "tcp://") {
		return nil
	}
	if slices.Contains(cfg.Bind, ep) {
		return nil
	}
	if _, port, _ := net.SplitHostPort(strings.TrimPrefix(ep, "tcp://")); port == "0" {
		return fmt.Errorf("endpoint %q: port 0 can be bound, not dialled", ep)
	}
	if len(cfg.Key) == 0 && !isLoopbackTCP(ep) {
		return fmt.Errorf("%w: %s", ErrNoKeyDial, ep)
	}
	return nil
}

// isLoopbackTCP reports whether a tcp endpoint's host is a loopback address.
func isLoopbackTCP(ep string) bool {
	host, _, err := net.SplitHostPort(strings.TrimPrefix(ep, "tcp://"))
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Node is one process's handle on a ZeroMQ cluster. It implements
// transport.Transport and is safe for concurrent use.
type Node struct {
	cfg Config
	log zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	brokers map[string]*broker // by configured endpoint
	bound   []string

	mu     sync.Mutex
	closed bool
	links  map[string]*link // by endpoint, opened on first use

	subSeq    atomic.Uint32
	workerSeq atomic.Uint32
	stats     counters
}

type counters struct {
	published, delivered, dropped, requests, served atomic.Uint64
	authFailures, replayed, malformed               atomic.Uint64
}

var _ transport.Transport = (*Node)(nil)

// New binds cfg.Bind and returns a running node. Links to other endpoints
// are opened on first use and reconnect forever.
func New(cfg Config) (*Node, error) {
	cfg.defaults()
	for _, ep := range cfg.Bind {
		if err := ValidateEndpoint(ep); err != nil {
			return nil, err
		}
		if len(cfg.Key) == 0 && strings.HasPrefix(ep, "tcp://") && !isLoopbackTCP(ep) {
			return nil, fmt.Errorf("%w: %s", ErrNoKey, ep)
		}
	}
	dialed := make(map[string]string, len(cfg.Routes)+1) // endpoint -> what names it
	for svc, ep := range cfg.Routes {
		dialed[ep] = fmt.Sprintf("route %q", svc)
	}
	if cfg.Bus != "" {
		dialed[cfg.Bus] = "bus"
	}
	for ep, what := range dialed {
		if err := checkDialed(cfg, ep); err != nil {
			return nil, fmt.Errorf("zmq: %s: %w", what, err)
		}
	}
	if cfg.HeartbeatTimeout < 2*cfg.HeartbeatInterval {
		return nil, fmt.Errorf("zmq: heartbeat timeout %v must be at least twice the interval %v", cfg.HeartbeatTimeout, cfg.HeartbeatInterval)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger,
		ctx:     ctx,
		cancel:  cancel,
		brokers: make(map[string]*broker),
		links:   make(map[string]*link),
	}
	for _, ep := range cfg.Bind {
		b, err := newBroker(n, ep)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.brokers[ep] = b
		n.bound = append(n.bound, b.addr)
	}
	n.wg.Add(1)
	go n.tick()
	return n, nil
}

// Endpoints returns the bound endpoints, with tcp port 0 resolved.
func (n *Node) Endpoints() []string { return append([]string(nil), n.bound...) }

// route returns the endpoint serving service.
func (n *Node) route(service string) (string, error) {
	if ep, ok := n.cfg.Routes[service]; ok {
		return ep, nil
	}
	if i := strings.IndexByte(service, '.'); i > 0 {
		if ep, ok := n.cfg.Routes[service[:i]]; ok {
			return ep, nil
		}
	}
	if ep, ok := n.cfg.Routes["*"]; ok {
		return ep, nil
	}
	return "", fmt.Errorf("%w for service %q", ErrNoRoute, service)
}

// target returns the local broker for ep, or the link to it.
func (n *Node) target(ep string) (*broker, *link, error) {
	if b, ok := n.brokers[ep]; ok {
		return b, nil, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, nil, transport.ErrClosed
	}
	l, ok := n.links[ep]
	if !ok {
		l = newLink(n, ep)
		n.links[ep] = l
	}
	return nil, l, nil
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Publish implements transport.Publisher.
func (n *Node) Publish(ctx context.Context, topic string, data []byte) error {
	if err := transport.ValidateName(topic, false); err != nil {
		return err
	}
	if len(data) > transport.MaxPayload {
		return fmt.Errorf("%w: %d bytes", transport.ErrTooLarge, len(data))
	}
	if n.isClosed() {
		return transport.ErrClosed
	}
	if n.cfg.Bus == "" {
		return fmt.Errorf("%w: no bus endpoint", ErrNoRoute)
	}
	b, l, err := n.target(n.cfg.Bus)
	if err != nil {
		return err
	}
	if b != nil {
		err = b.publishLocal(topic, data)
	} else {
		err = l.publish(ctx, topic, data)
	}
	if err == nil {
		n.stats.published.Add(1)
	}
	return err
}

// Subscribe implements transport.Subscriber.
func (n *Node) Subscribe(ctx context.Context, prefix string, opts ...transport.SubscribeOption) (transport.Subscription, error) {
	if err := transport.ValidateName(prefix, true); err != nil {
		return nil, err
	}
	if n.isClosed() {
		return nil, transport.ErrClosed
	}
	if n.cfg.Bus == "" {
		return nil, fmt.Errorf("%w: no bus endpoint", ErrNoRoute)
	}
	o := transport.ResolveSubscribe(opts)
	b, l, err := n.target(n.cfg.Bus)
	if err != nil {
		return nil, err
	}
	if b != nil {
		return b.subscribeLocal(prefix, o.QueueSize)
	}
	return l.subscribe(ctx, prefix, o.QueueSize)
}

// Request implements transport.Requester.
func (n *Node) Request(ctx context.Context, service string, data []byte, opts ...transport.RequestOption) ([]byte, error) {
	if err := transport.ValidateName(service, false); err != nil {
		return nil, err
	}
	if len(data) > transport.MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes", transport.ErrTooLarge, len(data))
	}
	if n.isClosed() {
		return nil, transport.ErrClosed
	}
	ep, err := n.route(service)
	if err != nil {
		return nil, err
	}
	b, l, err := n.target(ep)
	if err != nil {
		return nil, err
	}
	n.stats.requests.Add(1)
	o := transport.ResolveRequest(opts)
	if b != nil {
		return b.requestLocal(ctx, service, data, o.Idempotent)
	}
	return l.request(ctx, service, data, o.Idempotent)
}

// Serve implements transport.Responder.
func (n *Node) Serve(service string, h transport.Handler, opts ...transport.ServeOption) (transport.Service, error) {
	if err := transport.ValidateName(service, false); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("zmq: serve: nil handler")
	}
	if n.isClosed() {
		return nil, transport.ErrClosed
	}
	ep, err := n.route(service)
	if err != nil {
		return nil, err
	}
	b, l, err := n.target(ep)
	if err != nil {
		return nil, err
	}
	o := transport.ResolveServe(opts)
	if b != nil {
		return b.serveLocal(service, h, o.Concurrency), nil
	}
	return l.serve(service, h, o.Concurrency), nil
}

// Stats implements transport.Transport.
func (n *Node) Stats() transport.Stats {
	s := &n.stats
	return transport.Stats{
		Published: s.published.Load(), Delivered: s.delivered.Load(), Dropped: s.dropped.Load(),
		Requests: s.requests.Load(), Served: s.served.Load(),
		AuthFailures: s.authFailures.Load(), Replayed: s.replayed.Load(), Malformed: s.malformed.Load(),
	}
}

// closeFlushTimeout bounds how long Close waits for acknowledgements of
// publishes already accepted.
const closeFlushTimeout = 2 * time.Second

// Close implements transport.Transport. Publishes already accepted are
// flushed and acknowledged first (up to closeFlushTimeout), then links say
// goodbye so brokers drop this node's subscriptions and replicas at once.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.Unlock()

	deadline := time.Now().Add(closeFlushTimeout)
	for _, l := range links {
		l.close(deadline)
	}
	for _, b := range n.brokers {
		b.close()
	}
	n.cancel()
	n.wg.Wait()
	return nil
}

// tick drives heartbeats, liveness checks and sweeps.
func (n *Node) tick() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			n.mu.Lock()
			links := make([]*link, 0, len(n.links))
			for _, l := range n.links {
				links = append(links, l)
			}
			n.mu.Unlock()
			for _, l := range links {
				l.tick(now)
			}
			for _, b := range n.brokers {
				b.tick(now)
			}
		}
	}
}

// countDrop records why an inbound packet was dropped.
func (n *Node) countDrop(err error) {
	switch {
	case errors.Is(err, errMAC), errors.Is(err, errVersion), errors.Is(err, errShort):
		n.stats.authFailures.Add(1)
	case errors.Is(err, errReplay), errors.Is(err, errStale):
		n.stats.replayed.Add(1)
	default:
		n.stats.malformed.Add(1)
	}
}
