// Package eventhub is the event hub module: the platform's memory of what
// happened. It serves eventhub.publish (append an event durably, once per
// event ID, with the next number of one global, gap-free sequence) and
// eventhub.read (stored events after a sequence number), and announces
// each stored event, in sequence order, on contracts.EventTopic(type).
//
// Subscribers follow the ZeroMQ Guide's Clone pattern (package hubclient
// implements it): subscribe, read the log from the last sequence held,
// then take live events, filling any gap from the log. So a subscriber
// that falls behind, loses its link or outlives a hub restart resumes from
// its last sequence and never silently misses an event.
//
// The log is an eventlog.Log: segment files in the data directory (the
// embedded default) or a PostgreSQL table (split deployments; a second
// hub process can take over). Group commit happens in the log: many
// publishers' events are made durable by one fsync or one transaction.
package eventhub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Summary says in one line what the module does, for --help.
const Summary = "durable, numbered event log and live event fan-out"

// Tuning.
const (
	// serveConcurrency is how many requests the hub handles at once: the
	// more publishers wait together, the more one fsync covers.
	serveConcurrency = 512
	// pollInterval is how often the announcer looks at the log for events
	// another hub process appended (shared PostgreSQL log).
	pollInterval = 250 * time.Millisecond
	// announceBatch bounds one read of the log by the announcer.
	announceBatch = 1000
	// maxScan bounds the records one filtered eventhub.read examines.
	maxScan = eventlog.MaxReadLimit
	// compactEvery is how often retention runs.
	compactEvery = time.Hour
)

// Options configure the hub.
type Options struct {
	// OpenLog opens the log; dataDir is the process's data directory.
	OpenLog func(ctx context.Context, dataDir string) (eventlog.Log, error)
	// Retention, if positive, removes events older than it (hourly).
	Retention time.Duration
	// Shared says the log may be appended to by another hub process (the
	// PostgreSQL backend), so the announcer also polls it.
	Shared bool
}

// Hub is the event hub module.
type Hub struct {
	opts Options

	log    zerolog.Logger
	tr     transport.Transport
	elog   eventlog.Log
	svc    transport.Service
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// appended wakes the announcer; it holds at most one signal.
	appended chan struct{}
}

// New returns the module, constructed without side effects.
func New(opts Options) *Hub {
	return &Hub{opts: opts, appended: make(chan struct{}, 1)}
}

// Name implements modules.Module.
func (h *Hub) Name() string { return modules.Eventhub }

// Start opens the log and serves the hub's requests.
func (h *Hub) Start(ctx context.Context, host modules.Host) error {
	if h.opts.OpenLog == nil {
		return errors.New("eventhub: no log configured")
	}
	h.log = host.Logger()
	h.tr = host.Transport()
	elog, err := h.opts.OpenLog(ctx, host.DataDir())
	if err != nil {
		return fmt.Errorf("eventhub: open log: %w", err)
	}
	st, err := elog.Stats(ctx)
	if err != nil {
		elog.Close()
		return fmt.Errorf("eventhub: log stats: %w", err)
	}
	h.elog = elog

	mux := rpc.NewMux(h.log)
	rpc.Handle(mux, h.publish)
	rpc.Handle(mux, h.read)
	svc, err := mux.Serve(h.tr, contracts.ServiceEventHub, transport.WithConcurrency(serveConcurrency))
	if err != nil {
		elog.Close()
		return fmt.Errorf("eventhub: serve: %w", err)
	}
	h.svc = svc

	runCtx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(1)
	go h.announce(runCtx, st.Head)
	if h.opts.Retention > 0 {
		h.wg.Add(1)
		go h.retain(runCtx)
	}
	h.log.Info().Int64("head", st.Head).Int64("first", st.First).Msg("event hub started")
	return nil
}

// Stop stops serving, lets the announcer publish what was stored, and
// closes the log.
func (h *Hub) Stop(ctx context.Context) error {
	var errs []error
	if h.svc != nil {
		errs = append(errs, h.svc.Close())
	}
	if h.cancel != nil {
		h.signal()
		h.cancel()
		h.wg.Wait()
	}
	if h.elog != nil {
		errs = append(errs, h.elog.Close())
	}
	return errors.Join(errs...)
}

func (h *Hub) signal() {
	select {
	case h.appended <- struct{}{}:
	default:
	}
}

// publish appends one event.
func (h *Hub) publish(ctx context.Context, req contracts.PublishEvent) (contracts.Message, error) {
	body, err := json.Marshal(req.Event)
	if err != nil {
		return nil, fmt.Errorf("eventhub: encode event: %w", err)
	}
	res, err := h.elog.Append(ctx, []eventlog.Entry{{ID: req.Event.ID.String(), Body: body}})
	if err != nil {
		return nil, logError(err)
	}
	if !res[0].Duplicate {
		h.signal()
	}
	return contracts.Published{Seq: res[0].Seq, Duplicate: res[0].Duplicate}, nil
}

// read answers eventhub.read, applying the filters over at most maxScan
// records.
func (h *Hub) read(ctx context.Context, req contracts.ReadEvents) (contracts.Message, error) {
	limit := req.Limit
	if limit == 0 {
		limit = contracts.DefaultListLimit
	}
	types := make(map[string]bool, len(req.Types))
	for _, t := range req.Types {
		types[t] = true
	}
	filtered := req.Repo != "" || len(types) > 0
	out := contracts.EventBatch{Events: []contracts.Event{}, Next: req.Since}
	scanned := 0
	for len(out.Events) < limit && scanned < maxScan {
		n := limit - len(out.Events)
		if filtered {
			n = min(maxScan-scanned, eventlog.MaxReadLimit)
		}
		recs, err := h.elog.Read(ctx, out.Next, n)
		if err != nil {
			return nil, logError(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			scanned++
			ev, err := decodeRecord(r)
			if err != nil {
				return nil, err
			}
			out.Next = r.Seq
			if req.Repo != "" && ev.Repo != req.Repo || len(types) > 0 && !types[ev.Type] {
				continue
			}
			out.Events = append(out.Events, ev)
			if len(out.Events) == limit {
				break
			}
		}
	}
	st, err := h.elog.Stats(ctx)
	if err != nil {
		return nil, logError(err)
	}
	out.Head = max(st.Head, out.Next)
	return out, nil
}

// decodeRecord turns a stored record back into its event.
func decodeRecord(r eventlog.Record) (contracts.Event, error) {
	var ev contracts.Event
	if err := json.Unmarshal(r.Body, &ev); err != nil {
		return ev, contracts.NewError(contracts.CodeInternal, fmt.Sprintf("event %d: stored body does not decode: %v", r.Seq, err))
	}
	ev.Seq = r.Seq
	return ev, nil
}

// logError maps log errors to reply codes.
func logError(err error) error {
	var old *eventlog.TooOldError
	switch {
	case errors.As(err, &old):
		return contracts.NewError(contracts.CodeTooOld, fmt.Sprintf("events after %d are no longer held; the oldest is %d", old.Since, old.First))
	case errors.Is(err, eventlog.ErrInvalid):
		return contracts.NewError(contracts.CodeInvalidArgument, err.Error())
	case errors.Is(err, eventlog.ErrClosed):
		return contracts.NewError(contracts.CodeUnavailable, "event hub is stopping")
	}
	return err
}

// announce publishes every event appended after head, in sequence order,
// reading them from the log. It runs until ctx ends, then drains what is
// stored.
func (h *Hub) announce(ctx context.Context, head int64) {
	defer h.wg.Done()
	var tick <-chan time.Time
	if h.opts.Shared {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		tick = t.C
	}
	last := head
	for {
		stopping := false
		select {
		case <-h.appended:
		case <-tick:
		case <-ctx.Done():
			stopping = true
		}
		for {
			// The announcer outlives ctx by one drain, bounded in time.
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			recs, err := h.elog.Read(rctx, last, announceBatch)
			cancel()
			if err != nil {
				var old *eventlog.TooOldError
				if errors.As(err, &old) {
					last = old.First - 1
					continue
				}
				if !errors.Is(err, eventlog.ErrClosed) {
					h.log.Error().Err(err).Int64("since", last).Msg("announcer cannot read the log; subscribers will catch up from it")
				}
				break
			}
			for _, r := range recs {
				h.announceOne(r)
				last = r.Seq
			}
			if len(recs) < announceBatch {
				break
			}
		}
		if stopping {
			return
		}
	}
}

// announceOne publishes one stored event; a failure only delays
// subscribers, who read the log when they see a gap.
func (h *Hub) announceOne(r eventlog.Record) {
	ev, err := decodeRecord(r)
	if err != nil {
		h.log.Error().Err(err).Msg("announce")
		return
	}
	env, err := contracts.New(ev)
	if err != nil {
		h.log.Error().Err(err).Int64("seq", ev.Seq).Msg("announce: stored event does not validate")
		return
	}
	data, err := contracts.Marshal(env)
	if err != nil {
		h.log.Error().Err(err).Int64("seq", ev.Seq).Msg("announce")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.tr.Publish(ctx, contracts.EventTopic(ev.Type), data); err != nil && !errors.Is(err, transport.ErrClosed) {
		h.log.Warn().Err(err).Int64("seq", ev.Seq).Msg("announce: publish failed; subscribers will read it from the log")
	}
}

// retain compacts the log by the retention policy.
func (h *Hub) retain(ctx context.Context) {
	defer h.wg.Done()
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	for {
		n, err := h.elog.Compact(ctx, time.Now().Add(-h.opts.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			h.log.Error().Err(err).Msg("retention: compaction failed")
		case n > 0:
			h.log.Info().Int64("removed", n).Dur("retention", h.opts.Retention).Msg("retention: old events removed")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DecodeRecord returns the event a hub stored as r (for tools that read
// the log directly, such as `zeroci datastore rebuild`).
func DecodeRecord(r eventlog.Record) (contracts.Event, error) { return decodeRecord(r) }
