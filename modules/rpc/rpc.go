// Package rpc carries contracts messages over the transport's
// request/reply: Call sends a request and decodes its reply, Mux serves a
// module's requests by message type. Every module uses it; it holds no
// module's logic.
//
// A module serves one transport service, named by its request types'
// TypeInfo.Service (contracts.ServiceDatastore...), and dispatches on the
// envelope's type. A request that does not decode or validate is answered
// with reply.error invalid_argument before any handler runs; a handler's
// error reaches the caller as a *contracts.Error (contracts.AsError), and
// a handler's panic as internal, never as a crash of the serving process.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/transport"
)

// Call sends req to the service its type names and decodes the reply as
// R. A reply.error comes back as a *contracts.Error; a transport failure
// as the transport's error (contracts.CodeOf maps it to unavailable).
func Call[R any, PR interface {
	*R
	contracts.Message
}](ctx context.Context, rq transport.Requester, req contracts.Message, opts ...transport.RequestOption) (R, error) {
	var zero R
	env, rep, err := roundTrip(ctx, rq, req, opts)
	if err != nil {
		return zero, err
	}
	return contracts.DecodeReply[R, PR](env, rep)
}

// CallUnchecked is Call without the local validation of req, for a
// caller that built req from parts it validated already (the responder
// validates every request anyway, so a bad one still fails, remotely).
// It saves a strict decode of large nested payloads on hot paths.
func CallUnchecked[R any, PR interface {
	*R
	contracts.Message
}](ctx context.Context, rq transport.Requester, req contracts.Message, opts ...transport.RequestOption) (R, error) {
	var zero R
	info, ok := contracts.Lookup(req.MessageType())
	if !ok || info.Kind != contracts.KindRequest {
		return zero, fmt.Errorf("rpc: %s is not a request type", req.MessageType())
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("rpc: %s: %w", info.Name, err)
	}
	now := time.Now().UTC()
	env := contracts.Envelope{Type: info.Name, Version: info.Version, ID: contracts.NewID(now), Time: now, Payload: payload}
	env, rep, err := send(ctx, rq, info, env, opts)
	if err != nil {
		return zero, err
	}
	return contracts.DecodeReply[R, PR](env, rep)
}

// Do sends req like Call and returns the reply as whatever message type
// it is (a reply.error as a *contracts.Error), for callers that do not
// know the reply type, such as tools and tests.
func Do(ctx context.Context, rq transport.Requester, req contracts.Message, opts ...transport.RequestOption) (contracts.Message, error) {
	env, rep, err := roundTrip(ctx, rq, req, opts)
	if err != nil {
		return nil, err
	}
	if rep.CorrelationID != env.ID {
		return nil, fmt.Errorf("%w: reply correlates %s, request is %s", contracts.ErrNotReply, rep.CorrelationID, env.ID)
	}
	msg, err := contracts.DecodeAny(rep)
	if err != nil {
		return nil, err
	}
	if e, ok := msg.(contracts.Error); ok {
		return nil, &e
	}
	return msg, nil
}

func roundTrip(ctx context.Context, rq transport.Requester, req contracts.Message, opts []transport.RequestOption) (env, rep contracts.Envelope, err error) {
	info, ok := contracts.Lookup(req.MessageType())
	if !ok || info.Kind != contracts.KindRequest {
		return env, rep, fmt.Errorf("rpc: %s is not a request type", req.MessageType())
	}
	if env, err = contracts.New(req); err != nil {
		return env, rep, err
	}
	return send(ctx, rq, info, env, opts)
}

func send(ctx context.Context, rq transport.Requester, info contracts.TypeInfo, env contracts.Envelope, opts []transport.RequestOption) (_, rep contracts.Envelope, err error) {
	data, err := contracts.Marshal(env)
	if err != nil {
		return env, rep, err
	}
	out, err := rq.Request(ctx, info.Service, data, opts...)
	if err != nil {
		return env, rep, fmt.Errorf("rpc: %s: %w", info.Name, err)
	}
	if rep, err = contracts.Unmarshal(out); err != nil {
		return env, rep, fmt.Errorf("rpc: %s: reply: %w", info.Name, err)
	}
	return env, rep, nil
}

// HandlerFunc serves one decoded, validated request and returns the reply
// message (of the request type's reply type) or an error.
type HandlerFunc func(ctx context.Context, req contracts.Envelope) (contracts.Message, error)

// Mux dispatches a service's requests on their type. Register handlers
// with Handle before Serve.
type Mux struct {
	log      zerolog.Logger
	mu       sync.RWMutex
	handlers map[string]HandlerFunc
}

// NewMux returns an empty Mux that logs handler panics to log.
func NewMux(log zerolog.Logger) *Mux {
	return &Mux{log: log, handlers: make(map[string]HandlerFunc)}
}

// Handle registers h for requests of type T: h gets them decoded and
// validated.
func Handle[T any, PT interface {
	*T
	contracts.Message
}](m *Mux, h func(ctx context.Context, req T) (contracts.Message, error)) {
	typ := PT(new(T)).MessageType()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handlers[typ] = func(ctx context.Context, env contracts.Envelope) (contracts.Message, error) {
		req, err := contracts.DecodePayload[T, PT](env)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// Serve registers the Mux as a replica of service on tr.
func (m *Mux) Serve(tr transport.Responder, service string, opts ...transport.ServeOption) (transport.Service, error) {
	return tr.Serve(service, m.serve, opts...)
}

// serve is the transport handler: it always answers with an envelope.
func (m *Mux) serve(ctx context.Context, data []byte) ([]byte, error) {
	env, err := contracts.Unmarshal(data)
	if err != nil {
		// No request to correlate with: answer with an error envelope
		// correlated to nothing, which the caller's DecodeReply refuses
		// clearly (it cannot have sent this).
		return errorReply(contracts.Envelope{}, err), nil
	}
	return errorOr(env, m.dispatch(ctx, env)), nil
}

// result is a handler's outcome.
type result struct {
	msg contracts.Message
	err error
}

func (m *Mux) dispatch(ctx context.Context, env contracts.Envelope) (res result) {
	m.mu.RLock()
	h := m.handlers[env.Type]
	m.mu.RUnlock()
	if h == nil {
		return result{err: contracts.NewError(contracts.CodeInvalidArgument, fmt.Sprintf("no handler for %q here", env.Type))}
	}
	defer func() {
		if p := recover(); p != nil {
			m.log.Error().Str("type", env.Type).Interface("panic", p).Bytes("stack", debug.Stack()).Msg("handler panicked")
			res = result{err: contracts.NewError(contracts.CodeInternal, "internal error handling "+env.Type)}
		}
	}()
	msg, err := h(ctx, env)
	if err == nil && msg == nil {
		err = errors.New("handler returned no reply")
	}
	return result{msg: msg, err: err}
}

func errorOr(req contracts.Envelope, res result) []byte {
	if res.err != nil {
		return errorReply(req, res.err)
	}
	// A reply that does not encode is the responder's fault, never the
	// caller's: internal, whatever the validation error says.
	rep, err := contracts.NewReply(req, res.msg)
	if err != nil {
		return errorReply(req, contracts.NewError(contracts.CodeInternal, fmt.Sprintf("rpc: reply to %s: %v", req.Type, err)))
	}
	out, err := contracts.Marshal(rep)
	if err != nil {
		return errorReply(req, contracts.NewError(contracts.CodeInternal, fmt.Sprintf("rpc: reply to %s: %v", req.Type, err)))
	}
	return out
}

func errorReply(req contracts.Envelope, err error) []byte {
	out, mErr := contracts.Marshal(contracts.NewErrorReply(req, err))
	if mErr != nil { // unreachable: a reply.error always encodes
		panic(mErr)
	}
	return out
}
