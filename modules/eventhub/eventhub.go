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
	"strconv"
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
	// gapWait is how long the announcer waits for a missing number's
	// publisher to hand it over before it reads the log instead.
	gapWait = 20 * time.Millisecond
	// maxPending bounds the announcements handed over and not yet
	// published; past it they are left for the announcer to read back.
	maxPending = 1 << 16
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

	// pending holds announcements made by publish, by sequence number,
	// until the announcer publishes them in order.
	mu      sync.Mutex
	pending map[int64]announcement
}

// announcement is a stored event ready to publish.
type announcement struct {
	topic string
	data  []byte
}

// New returns the module, constructed without side effects.
func New(opts Options) *Hub {
	return &Hub{opts: opts, appended: make(chan struct{}, 1), pending: make(map[int64]announcement)}
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
		// Encode the announcement here, in parallel with other
		// publishers, and hand it to the announcer.
		seq := res[0].Seq
		if a, err := announce(req.Event.Type, seq, body); err != nil {
			h.log.Error().Err(err).Int64("seq", seq).Msg("announce: encode")
		} else {
			h.mu.Lock()
			if len(h.pending) < maxPending {
				h.pending[seq] = a
			}
			h.mu.Unlock()
		}
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
	if req.Since > st.Head && len(out.Events) == 0 {
		// The reader holds events this log does not have: the log was
		// lost or replaced, or the reader follows another one. Say so
		// rather than let it wait for numbers it has already seen.
		return nil, contracts.NewError(contracts.CodeConflict,
			fmt.Sprintf("since %d is past this event log's head %d: the log was replaced or lost, or this is another deployment's hub", req.Since, st.Head))
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

// announce publishes every event stored after head, in sequence order,
// until ctx ends, then what is stored by then. Publishers hand their
// events over (pending); a number that does not arrive within gapWait
// (its publisher failed after the append, or the pending map was full),
// or that another hub appended (a shared log), is read from the log.
func (h *Hub) announce(ctx context.Context, head int64) {
	defer h.wg.Done()
	var tick <-chan time.Time
	if h.opts.Shared {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		tick = t.C
	}
	gap := time.NewTimer(gapWait)
	gap.Stop()
	defer gap.Stop()
	gapArmed := false
	last := head
	for {
		readLog, stopping := false, false
		select {
		case <-h.appended:
		case <-tick:
			readLog = true
		case <-gap.C:
			gapArmed = false
			readLog = true
		case <-ctx.Done():
			readLog, stopping = true, true
		}
		last = h.announcePending(last)
		if readLog {
			last = h.announceFromLog(last)
			last = h.announcePending(last)
		}
		if stopping {
			return
		}
		h.mu.Lock()
		waiting := len(h.pending) > 0
		h.mu.Unlock()
		if waiting && !gapArmed {
			gap.Reset(gapWait)
			gapArmed = true
		}
	}
}

// announcePending publishes the handed-over announcements that follow
// last without a gap and returns the new last.
func (h *Hub) announcePending(last int64) int64 {
	for {
		h.mu.Lock()
		a, ok := h.pending[last+1]
		if ok {
			delete(h.pending, last+1)
		}
		h.mu.Unlock()
		if !ok {
			return last
		}
		h.publishAnnouncement(last+1, a)
		last++
	}
}

// announceFromLog publishes what the log holds after last and returns the
// new last; announcements handed over for those numbers are dropped.
func (h *Hub) announceFromLog(last int64) int64 {
	for {
		// Bounded, and independent of the hub's context: the announcer
		// drains what is stored once more when it stops.
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
			return last
		}
		for _, r := range recs {
			h.mu.Lock()
			a, ok := h.pending[r.Seq]
			delete(h.pending, r.Seq)
			h.mu.Unlock()
			if !ok {
				ev, err := decodeRecord(r)
				if err == nil {
					a, err = encodeAnnouncement(ev)
				}
				if err != nil {
					h.log.Error().Err(err).Int64("seq", r.Seq).Msg("announce: stored event")
					last = r.Seq
					continue
				}
			}
			h.publishAnnouncement(r.Seq, a)
			last = r.Seq
		}
		if len(recs) < announceBatch {
			return last
		}
	}
}

// eventVersion is the envelope version of eventhub.event.
var eventVersion = func() uint16 {
	info, _ := contracts.Lookup(contracts.TypeEvent)
	return info.Version
}()

// encodeAnnouncement encodes a stored event as the eventhub.event
// publication. The event was validated when it was published, so it is
// not decoded and validated again.
func encodeAnnouncement(ev contracts.Event) (announcement, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return announcement{}, err
	}
	return envelope(ev.Type, payload)
}

// announce makes the publication of the event typ stored as body (its
// JSON without a seq: Seq is 0, so omitted) under seq, splicing the seq
// in rather than encoding the event again.
func announce(typ string, seq int64, body []byte) (announcement, error) {
	if len(body) < 2 || body[0] != '{' {
		return announcement{}, fmt.Errorf("eventhub: stored body is not a JSON object")
	}
	payload := make([]byte, 0, len(body)+24)
	payload = append(payload, `{"seq":`...)
	payload = strconv.AppendInt(payload, seq, 10)
	if body[1] != '}' {
		payload = append(payload, ',')
	}
	payload = append(payload, body[1:]...)
	return envelope(typ, payload)
}

func envelope(typ string, payload []byte) (announcement, error) {
	now := time.Now().UTC()
	data, err := contracts.Marshal(contracts.Envelope{
		Type: contracts.TypeEvent, Version: eventVersion, ID: contracts.NewID(now), Time: now, Payload: payload,
	})
	if err != nil {
		return announcement{}, err
	}
	return announcement{topic: contracts.EventTopic(typ), data: data}, nil
}

// publishAnnouncement publishes one stored event; a failure only delays
// subscribers, who read the log when they see a gap.
func (h *Hub) publishAnnouncement(seq int64, a announcement) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.tr.Publish(ctx, a.topic, a.data); err != nil && !errors.Is(err, transport.ErrClosed) {
		h.log.Warn().Err(err).Int64("seq", seq).Msg("announce: publish failed; subscribers will read it from the log")
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
