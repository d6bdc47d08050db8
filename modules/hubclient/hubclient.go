// Package hubclient is how modules and commands talk to the event hub:
// Publish stores an event (idempotently), Read pages through the log, and
// Follow delivers every event after a sequence number, first from the log
// and then live, in order, with no gap and no duplicate (the ZeroMQ
// Guide's Clone pattern).
package hubclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Publish stores ev on the hub and returns its sequence number. It is
// idempotent by ev.ID: the transport may resend it, and a caller may retry
// it after an error; the hub stores it once.
//
// The event is not validated here but by the hub (see rpc.CallUnchecked):
// events come from contracts.NewEvent, which validated them.
func Publish(ctx context.Context, rq transport.Requester, ev contracts.Event) (contracts.Published, error) {
	return rpc.CallUnchecked[contracts.Published](ctx, rq, contracts.PublishEvent{Event: ev}, transport.Idempotent())
}

// PublishNew makes an event about subject with payload (contracts.NewEvent)
// and publishes it, retrying transient failures with the same event ID
// until ctx ends. It returns the stored event (with Seq).
func PublishNew(ctx context.Context, rq transport.Requester, subject contracts.Subject, payload contracts.Message) (contracts.Event, error) {
	ev, err := contracts.NewEvent(subject, payload)
	if err != nil {
		return ev, err
	}
	backoff := 10 * time.Millisecond
	for {
		pub, err := Publish(ctx, rq, ev)
		if err == nil {
			ev.Seq = pub.Seq
			return ev, nil
		}
		if contracts.CodeOf(err) != contracts.CodeUnavailable || ctx.Err() != nil {
			return ev, err
		}
		if serr := sleep(ctx, backoff); serr != nil {
			return ev, fmt.Errorf("hubclient: publish %s: %w", ev.Type, err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Read reads stored events (eventhub.read).
func Read(ctx context.Context, rq transport.Requester, req contracts.ReadEvents) (contracts.EventBatch, error) {
	return rpc.Call[contracts.EventBatch](ctx, rq, req, transport.Idempotent())
}

// Tuning of Follow.
const (
	// IdlePoll is how long Follow waits for a live event before it reads
	// the log anyway: a hub that restarted cannot tell a subscriber what
	// it announced while the link was down.
	IdlePoll = time.Second
	// followQueue is the live subscription's queue.
	followQueue = 8192
	// readLimit is the page size of catch-up reads.
	readLimit = contracts.MaxListLimit
)

// ErrTooOld matches the error Follow returns when the hub no longer holds
// the events after since.
var ErrTooOld = errors.New("hubclient: events too old")

// Follow calls fn with every event whose Seq is above since, in order,
// each once, until ctx ends or fn returns an error (which Follow returns).
// It subscribes first, then reads the log from since, then delivers live
// events, reading the log again whenever it sees a gap, misses messages,
// or hears nothing for IdlePoll. The hub being down only delays it: it
// retries until ctx ends. If retention removed events after since it
// returns an error matching ErrTooOld.
func Follow(ctx context.Context, tr transport.Transport, since int64, fn func(contracts.Event) error) error {
	f := follower{tr: tr, last: since, fn: fn}
	return f.run(ctx)
}

type follower struct {
	tr   transport.Transport
	last int64
	fn   func(contracts.Event) error
}

func (f *follower) run(ctx context.Context) error {
	sub, err := f.subscribe(ctx)
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := f.catchUp(ctx, 0); err != nil {
		return err
	}
	for {
		nctx, cancel := context.WithTimeout(ctx, IdlePoll)
		msg, err := sub.Next(nctx)
		cancel()
		switch {
		case err == nil:
			ev, derr := decodeLive(msg.Data)
			if derr != nil {
				// A message that does not decode is not the hub's: skip it,
				// and read the log in case it was.
				if err := f.catchUp(ctx, 0); err != nil {
					return err
				}
				continue
			}
			switch {
			case ev.Seq <= f.last:
			case ev.Seq == f.last+1:
				if err := f.deliver(ev); err != nil {
					return err
				}
			default:
				if err := f.catchUp(ctx, ev.Seq); err != nil {
					return err
				}
				if ev.Seq == f.last+1 {
					if err := f.deliver(ev); err != nil {
						return err
					}
				}
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, transport.ErrMissed):
			if err := f.catchUp(ctx, 0); err != nil {
				return err
			}
		default: // ErrClosed, or a transport failure Follow cannot mend
			return err
		}
	}
}

func (f *follower) subscribe(ctx context.Context) (transport.Subscription, error) {
	backoff := 10 * time.Millisecond
	for {
		sub, err := f.tr.Subscribe(ctx, contracts.EventTopicPrefix, transport.WithQueueSize(followQueue))
		if err == nil {
			return sub, nil
		}
		if errors.Is(err, transport.ErrClosed) || ctx.Err() != nil {
			return nil, err
		}
		if err := sleep(ctx, backoff); err != nil {
			return nil, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// catchUp reads the log after f.last and delivers what it finds. With
// until > 0 it stops once f.last reaches until-1 (the live event until is
// delivered by the caller); otherwise it reads until the log has nothing
// newer. The hub being unreachable is retried until ctx ends.
func (f *follower) catchUp(ctx context.Context, until int64) error {
	backoff := 10 * time.Millisecond
	for {
		limit := readLimit
		if until > 0 {
			if f.last >= until-1 {
				return nil
			}
			limit = int(min(int64(readLimit), until-1-f.last))
		}
		batch, err := Read(ctx, f.tr, contracts.ReadEvents{Since: f.last, Limit: limit})
		if err != nil {
			if contracts.CodeOf(err) == contracts.CodeTooOld {
				return fmt.Errorf("%w: %w", ErrTooOld, err)
			}
			if contracts.CodeOf(err) != contracts.CodeUnavailable || ctx.Err() != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("hubclient: read after %d: %w", f.last, err)
			}
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		for _, ev := range batch.Events {
			if ev.Seq <= f.last {
				continue
			}
			if ev.Seq != f.last+1 {
				return fmt.Errorf("hubclient: the hub skipped from %d to %d in an unfiltered read", f.last, ev.Seq)
			}
			if err := f.deliver(ev); err != nil {
				return err
			}
		}
		if len(batch.Events) == 0 {
			// Nothing newer stored. If a live event announced more, the
			// hub that stored it is unreachable; keep trying.
			if until == 0 || f.last >= until-1 {
				return nil
			}
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

func (f *follower) deliver(ev contracts.Event) error {
	if err := f.fn(ev); err != nil {
		return err
	}
	f.last = ev.Seq
	return nil
}

// decodeLive decodes an eventhub.event publication. Only the hub publishes
// on the event topics (and cross-process packets are authenticated), and
// the hub validated the event when it was published, so this checks the
// envelope and the record but leaves the payload to the consumer, which
// decodes it anyway (Event.DecodePayload).
func decodeLive(data []byte) (contracts.Event, error) {
	env, err := contracts.Unmarshal(data)
	if err != nil {
		return contracts.Event{}, err
	}
	if env.Type != contracts.TypeEvent {
		return contracts.Event{}, fmt.Errorf("hubclient: %s published on an event topic", env.Type)
	}
	var ev contracts.Event
	if err := json.Unmarshal(env.Payload, &ev); err != nil {
		return ev, fmt.Errorf("hubclient: event: %w", err)
	}
	if ev.Seq < 1 || ev.Type == "" {
		return ev, fmt.Errorf("hubclient: event without seq or type")
	}
	return ev, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
