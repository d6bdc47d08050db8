// Package transport is the only way zeroci modules talk to each other: pub/sub
// by topic prefix and request/reply to named services.
//
// Two implementations satisfy the same contract and the same conformance suite
// (package transporttest): transport/inproc, on Go channels, for modules that
// share a process, and transport/zmq, on ZeroMQ sockets (tcp://, ipc://,
// inproc://), for modules split across processes and hosts. A module cannot
// tell which one it talks through:
//
//   - Data is copied at the boundary: a publisher or a handler may reuse its
//     buffer as soon as the call returns, and every subscriber or caller gets
//     its own copy.
//   - Messages from one Transport (one publisher) reach each subscription in
//     the order they were published.
//   - Each subscription has a bounded queue. When it is full, newer messages
//     are dropped for that subscription only, and its next Next call returns a
//     *MissedError saying how many: loss is never silent. Other subscriptions
//     and the publisher are not slowed down.
//   - Requests are load-balanced over the replicas serving a service; each
//     request is handled by at most one replica (twice only when the caller
//     marked it Idempotent and the first replica was lost).
//   - Errors are the sentinels below, checked with errors.Is.
package transport

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limits shared by every implementation, so a module sees the same errors
// whichever transport carries its messages.
const (
	// MaxPayload is the largest message body Publish and Request accept and
	// the largest reply a Handler may return.
	MaxPayload = 8 << 20
	// MaxNameLen bounds topics, prefixes and service names.
	MaxNameLen = 255
	// DefaultQueueSize is a subscription's queue bound, in messages.
	DefaultQueueSize = 1024
)

// Sentinel errors. Implementations wrap them with context; test with errors.Is.
var (
	// ErrClosed: the Transport, Subscription or Service was closed.
	ErrClosed = errors.New("transport: closed")
	// ErrNoResponder: no replica serves the service (none registered, or
	// every replica is unreachable).
	ErrNoResponder = errors.New("transport: no responder")
	// ErrDeadlineExceeded: the request's context deadline passed before a
	// reply came. errors.Is(err, context.DeadlineExceeded) is also true.
	ErrDeadlineExceeded = errors.New("transport: deadline exceeded")
	// ErrResponderFailed: the handler returned an error or panicked. The
	// error is a *RemoteError carrying the handler's message.
	ErrResponderFailed = errors.New("transport: responder failed")
	// ErrResponderLost: the replica handling the request died (or closed)
	// before replying; the request may or may not have taken effect.
	ErrResponderLost = errors.New("transport: responder lost")
	// ErrMissed: a subscription dropped messages because its queue was full,
	// or lost its link to the broker. The error is a *MissedError.
	ErrMissed = errors.New("transport: messages missed")
	// ErrTooLarge: a payload is over MaxPayload.
	ErrTooLarge = errors.New("transport: payload too large")
	// ErrInvalidName: a topic, prefix or service name is empty (where not
	// allowed), longer than MaxNameLen, or contains a NUL byte.
	ErrInvalidName = errors.New("transport: invalid name")
)

// Message is one delivery to a subscription. Data belongs to the receiver.
type Message struct {
	Topic string
	Data  []byte
}

// Publisher publishes to topics.
type Publisher interface {
	// Publish sends data to every subscription whose prefix is a prefix of
	// topic. It returns once the message is accepted for delivery: it blocks
	// only while the implementation's bounded send window is full (flow
	// control), until ctx ends. The caller may reuse data afterwards.
	// Safe for concurrent use; messages of one goroutine keep their order.
	Publish(ctx context.Context, topic string, data []byte) error
}

// Subscriber subscribes to topic prefixes.
type Subscriber interface {
	// Subscribe starts a subscription to every topic that begins with
	// prefix ("" means all topics). When Subscribe returns, the subscription
	// is active everywhere: any Publish that starts afterwards reaches it.
	Subscribe(ctx context.Context, prefix string, opts ...SubscribeOption) (Subscription, error)
}

// Subscription is a live subscription with a bounded queue.
type Subscription interface {
	// Next returns the next message. It returns a *MissedError (ErrMissed)
	// once, at the place in the stream where messages were dropped, then
	// goes on with the messages after the gap. It returns ErrClosed after
	// Close (or after its Transport closed) and ctx.Err() when ctx ends.
	// Not safe for concurrent use by several goroutines.
	Next(ctx context.Context) (Message, error)
	// Close ends the subscription and unblocks Next. Idempotent.
	Close() error
}

// Handler serves one request. ctx carries the caller's deadline and is
// cancelled when the Service or Transport closes. The returned bytes are the
// reply; a non-nil error reaches the caller as a *RemoteError. A handler may
// be called concurrently.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

// Requester sends requests to services.
type Requester interface {
	// Request sends data to one replica of service and waits for its reply
	// until ctx ends. The deadline travels with the request (the handler's
	// ctx has it) and so does a cancel. Errors:
	// ErrNoResponder, ErrDeadlineExceeded, ErrResponderFailed (*RemoteError),
	// ErrResponderLost, ErrClosed, ErrTooLarge, ErrInvalidName.
	// Safe for concurrent use; each reply goes to its own caller.
	Request(ctx context.Context, service string, data []byte, opts ...RequestOption) ([]byte, error)
}

// Responder registers request handlers.
type Responder interface {
	// Serve registers h as one replica of service. Several replicas of a
	// service (in one process or many) share its requests. A nil h is a
	// programming error, reported as a plain error.
	Serve(service string, h Handler, opts ...ServeOption) (Service, error)
}

// Service is one registered replica.
type Service interface {
	// Close unregisters the replica; requests it is handling are cancelled
	// and their callers get ErrResponderLost (or are retried elsewhere when
	// idempotent). It may wait for the replica's running handlers, so it
	// must not be called from inside one. Idempotent.
	Close() error
}

// Transport is one process's (one node's) handle on the bus.
type Transport interface {
	Publisher
	Subscriber
	Requester
	Responder
	// Stats returns counters since the Transport was created.
	Stats() Stats
	// Close stops the node: it flushes what was accepted for sending (up to
	// a short deadline), closes every subscription and service, and makes
	// blocked calls return ErrClosed. It waits for running handlers, so it
	// must not be called from inside one. Idempotent; later calls return nil.
	Close() error
}

// Stats are a node's counters.
type Stats struct {
	Published    uint64 // messages accepted by Publish
	Delivered    uint64 // messages handed to subscriptions on this node
	Dropped      uint64 // messages dropped by full subscription queues on this node
	Requests     uint64 // requests sent by this node
	Served       uint64 // requests handled by handlers on this node
	AuthFailures uint64 // inbound messages dropped: bad or missing signature
	Replayed     uint64 // inbound messages dropped: replayed or stale
	Malformed    uint64 // inbound messages dropped: undecodable
}

// SubscribeOption configures a subscription.
type SubscribeOption func(*SubscribeOptions)

// SubscribeOptions is the resolved form of SubscribeOption values.
type SubscribeOptions struct {
	QueueSize int // bound of the subscription's queue, in messages
}

// WithQueueSize sets the subscription's queue bound (default DefaultQueueSize).
func WithQueueSize(n int) SubscribeOption {
	return func(o *SubscribeOptions) {
		if n > 0 {
			o.QueueSize = n
		}
	}
}

// ResolveSubscribe applies opts over the defaults.
func ResolveSubscribe(opts []SubscribeOption) SubscribeOptions {
	o := SubscribeOptions{QueueSize: DefaultQueueSize}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// RequestOption configures one request.
type RequestOption func(*RequestOptions)

// RequestOptions is the resolved form of RequestOption values.
type RequestOptions struct {
	// Idempotent requests are retried once on another replica when the
	// first one is lost while handling them.
	Idempotent bool
}

// Idempotent marks a request as safe to run twice.
func Idempotent() RequestOption { return func(o *RequestOptions) { o.Idempotent = true } }

// ResolveRequest applies opts over the defaults.
func ResolveRequest(opts []RequestOption) RequestOptions {
	var o RequestOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// ServeOption configures a replica.
type ServeOption func(*ServeOptions)

// ServeOptions is the resolved form of ServeOption values.
type ServeOptions struct {
	// Concurrency is how many requests the replica handles at once; more
	// wait at the balancer, which prefers the least busy replica.
	Concurrency int
}

// DefaultConcurrency is a replica's default number of concurrent requests.
const DefaultConcurrency = 64

// WithConcurrency sets how many requests a replica handles at once.
func WithConcurrency(n int) ServeOption {
	return func(o *ServeOptions) {
		if n > 0 {
			o.Concurrency = n
		}
	}
}

// ResolveServe applies opts over the defaults.
func ResolveServe(opts []ServeOption) ServeOptions {
	o := ServeOptions{Concurrency: DefaultConcurrency}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// RemoteError is a handler's error as its caller sees it.
type RemoteError struct {
	Service string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("transport: %s: %s", e.Service, e.Message)
}

// Unwrap makes errors.Is(err, ErrResponderFailed) true.
func (e *RemoteError) Unwrap() error { return ErrResponderFailed }

// MissedError reports messages a subscription did not receive.
type MissedError struct {
	// Count is how many messages were dropped; 0 means unknown (the link to
	// the broker was lost and re-established).
	Count uint64
}

func (e *MissedError) Error() string {
	if e.Count == 0 {
		return "transport: messages missed: link lost, count unknown"
	}
	return fmt.Sprintf("transport: %d messages missed", e.Count)
}

// Unwrap makes errors.Is(err, ErrMissed) true.
func (e *MissedError) Unwrap() error { return ErrMissed }

// DeadlineError is ErrDeadlineExceeded that also matches context.DeadlineExceeded.
type DeadlineError struct{ Service string }

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("transport: %s: deadline exceeded", e.Service)
}

// Is matches ErrDeadlineExceeded and context.DeadlineExceeded.
func (e *DeadlineError) Is(target error) bool {
	return target == ErrDeadlineExceeded || target == context.DeadlineExceeded
}

// ValidateName checks a topic or service name. allowEmpty is for prefixes.
func ValidateName(name string, allowEmpty bool) error {
	if name == "" && !allowEmpty {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrInvalidName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%w: NUL byte", ErrInvalidName)
		}
	}
	return nil
}

// CtxError maps a finished request context to the transport's error.
// A context whose deadline has passed counts as expired even before its
// timer has fired.
func CtxError(ctx context.Context, service string) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &DeadlineError{Service: service}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return &DeadlineError{Service: service}
	}
	return nil
}
