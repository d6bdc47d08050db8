package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/logclient"
)

// Streaming tuning.
const (
	// streamQueue is how many lines or events a stream's follower may read
	// ahead of its client. A slow client only stalls its own follower,
	// which long-polls its module on its own (logclient.Follow,
	// hubclient.Follow): nobody else waits for it.
	streamQueue = 256
	// writeGrace is added to the keep-alive interval for the deadline of
	// one write: a client that takes nothing for that long is dropped.
	writeGrace = 30 * time.Second
)

// streamRoutes registers the log and event routes.
func (a *API) streamRoutes() {
	a.handle("GET /api/v1/repos/{repo}/builds/{number}/jobs/{job}/log", contracts.ScopeRead, a.getLog)
	a.handle("GET /api/v1/events", contracts.ScopeRead, a.getEvents)
}

// getLog answers a job's log: the lines so far as text/plain, or, with
// Accept: text/event-stream or ?follow=1, server-sent events until the log
// is closed.
func (a *API) getLog(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	ref, ok := a.jobRef(w, r)
	if !ok {
		return
	}
	job, ok := a.lookupJob(w, r, ref)
	if !ok {
		return
	}
	q := r.URL.Query()
	if wantsSSE(r) {
		from, ok := lastEventID(w, r, "")
		if !ok {
			return
		}
		a.followLog(w, r, ref, job, from+1)
		return
	}
	a.plainLog(w, r, ref, truthy(q.Get("timestamps")))
}

// jobRef reads the route's repo, build number and job, answering 400 for
// ones that cannot exist.
func (a *API) jobRef(w http.ResponseWriter, r *http.Request) (contracts.JobRef, bool) {
	ref := contracts.JobRef{Repo: r.PathValue("repo"), Job: r.PathValue("job")}
	n, err := strconv.ParseInt(r.PathValue("number"), 10, 64)
	if err != nil || n < 1 {
		writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("build number %q: want a positive integer", r.PathValue("number")))
		return ref, false
	}
	ref.Build = n
	if err := (contracts.ReadLog{Job: ref, From: 1}).Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return ref, false
	}
	return ref, true
}

// lookupJob reads the job from the data store: 404 if the repository, the
// build or the job does not exist.
func (a *API) lookupJob(w http.ResponseWriter, r *http.Request, ref contracts.JobRef) (contracts.Job, bool) {
	b, err := call[contracts.Build](r.Context(), a, contracts.GetBuild{Repo: ref.Repo, Number: ref.Build})
	if err != nil {
		writeModuleError(w, a, err)
		return contracts.Job{}, false
	}
	for _, j := range b.Jobs {
		if j.ID == ref.Job {
			return j, true
		}
	}
	writeError(w, http.StatusNotFound, string(contracts.CodeNotFound), fmt.Sprintf("build %s#%d has no job %q", ref.Repo, ref.Build, ref.Job))
	return contracts.Job{}, false
}

// neverRuns reports whether a job ended without running, so that its log
// will never be written (a skipped job, or one canceled while pending).
func neverRuns(j contracts.Job) bool { return j.Attempt == 0 && j.Status.Terminal() }

// plainLog writes the lines stored so far, each as printed plus "\n"; with
// timestamps each is prefixed with its RFC 3339 time and a space.
func (a *API) plainLog(w http.ResponseWriter, r *http.Request, ref contracts.JobRef, timestamps bool) {
	res, err := logclient.Read(r.Context(), a.tr, ref, 1, 0)
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	for len(res.Lines) > 0 {
		buf.Reset()
		for _, ln := range res.Lines {
			if timestamps {
				buf.WriteString(ln.Time.UTC().Format(time.RFC3339Nano))
				buf.WriteByte(' ')
			}
			buf.WriteString(ln.Text)
			buf.WriteByte('\n')
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if res, err = logclient.Read(r.Context(), a.tr, ref, res.Next, 0); err != nil {
			// The status is sent: all we can do is cut the body short.
			a.log.Warn().Err(err).Str("job", ref.String()).Msg("reading a log")
			return
		}
	}
}

// followLog streams the log from line from on as server-sent events, one
// per line (id: the line number), then "event: end" once the log is
// closed.
func (a *API) followLog(w http.ResponseWriter, r *http.Request, ref contracts.JobRef, job contracts.Job, from int64) {
	s := a.startSSE(w)
	if neverRuns(job) {
		s.end()
		return
	}
	err := stream(a, r.Context(), s, func(ctx context.Context, send func(contracts.LogLine) error) error {
		return logclient.Follow(ctx, a.tr, ref, from, send)
	}, func(ln contracts.LogLine) {
		s.event(ln.N, "", ln.Text)
	}, func(ctx context.Context) bool {
		// While idle: a job that ended without running has no log to close.
		j, ok := a.jobNow(ctx, ref)
		return ok && neverRuns(j)
	})
	a.endStream(s, err, "log", ref.String())
}

// jobNow reads the job's current state; ok is false if it cannot.
func (a *API) jobNow(ctx context.Context, ref contracts.JobRef) (contracts.Job, bool) {
	b, err := call[contracts.Build](ctx, a, contracts.GetBuild{Repo: ref.Repo, Number: ref.Build})
	if err != nil {
		return contracts.Job{}, false
	}
	for _, j := range b.Jobs {
		if j.ID == ref.Job {
			return j, true
		}
	}
	return contracts.Job{}, false
}

// caughtUpEvent names the SSE event that marks the hub's head at the
// stream's start (no event type of the hub has a dash).
const caughtUpEvent = "caught-up"

// getEvents streams hub events after Last-Event-ID (or ?since=): from the
// hub's head when neither is given, from the beginning with 0. ?repo=
// keeps only events about that repository. A start the hub no longer holds
// is 410 too_old.
func (a *API) getEvents(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	repo := r.URL.Query().Get("repo")
	if repo != "" {
		if err := (contracts.ReadEvents{Repo: repo}).Validate(); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
			return
		}
	}
	since, ok := lastEventID(w, r, "since")
	if !ok {
		return
	}
	// One read before streaming: it fixes the start when none was given,
	// and answers a start older than the hub's retention with 410.
	batch, err := hubclient.Read(r.Context(), a.tr, contracts.ReadEvents{Since: max(since, 0), Limit: 1})
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	if since < 0 {
		since = batch.Head
	}
	// Once the stream has passed the hub's head as it was at the start, it
	// says so with "event: caught-up" (data: that seq, no id): a client
	// that wants only the events stored so far stops there.
	head, caughtUp := batch.Head, false
	s := a.startSSE(w)
	err = stream(a, r.Context(), s, func(ctx context.Context, send func(contracts.Event) error) error {
		if since >= head {
			caughtUp = true
			if err := send(contracts.Event{Seq: head, Type: caughtUpEvent}); err != nil {
				return err
			}
		}
		return hubclient.Follow(ctx, a.tr, since, func(ev contracts.Event) error {
			if repo == "" || ev.Repo == repo {
				if err := send(ev); err != nil {
					return err
				}
			}
			if !caughtUp && ev.Seq >= head {
				caughtUp = true
				return send(contracts.Event{Seq: head, Type: caughtUpEvent})
			}
			return nil
		})
	}, func(ev contracts.Event) {
		if ev.Type == caughtUpEvent {
			s.event(0, caughtUpEvent, strconv.FormatInt(ev.Seq, 10))
			return
		}
		data, err := json.Marshal(ev)
		if err != nil { // an event that does not encode: say so in its place
			data, _ = json.Marshal(errorBody{Error: "event does not encode: " + err.Error(), Code: string(contracts.CodeInternal)})
		}
		s.event(ev.Seq, "", string(data))
	}, nil)
	a.endStream(s, err, "events", repo)
}

// endStream ends a stream after its follower returned err: "event: end"
// when the source is complete (nil), an "event: error" with the error's
// JSON body when it failed, nothing when the client left or the module
// stops.
func (a *API) endStream(s *sse, err error, what, subject string) {
	switch {
	case err == nil:
		s.end()
	case errors.Is(err, errClientGone), errors.Is(err, context.Canceled):
	case errors.Is(err, hubclient.ErrTooOld):
		s.fail(errorBody{Error: err.Error(), Code: string(contracts.CodeTooOld)})
	default:
		a.log.Warn().Err(err).Str("stream", what).Str("subject", subject).Msg("stream failed")
		code := contracts.CodeOf(err)
		if !code.Valid() {
			code = contracts.CodeInternal
		}
		s.fail(errorBody{Error: err.Error(), Code: string(code)})
	}
}

// errClientGone: a write to the client failed.
var errClientGone = errors.New("api: the client is gone")

// stream runs follow in its own goroutine, which hands items to this one
// through a bounded queue; this one writes each with write and flushes
// once the queue is drained, and writes a keep-alive comment every
// a.o.KeepAlive while idle (asking idle, if set, whether to end the stream
// as complete). It returns follow's result (nil: the source is complete),
// errClientGone, or ctx's error when the request or the module ends. The
// follower goroutine has returned when stream does.
func stream[T any](a *API, ctx context.Context, s *sse, follow func(context.Context, func(T) error) error, write func(T), idle func(context.Context) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(a.ctx, cancel) // Stop ends every stream
	defer stop()

	items := make(chan T, streamQueue)
	done := make(chan error, 1)
	go func() {
		done <- follow(ctx, func(v T) error {
			select {
			case items <- v:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	defer func() { cancel(); <-done }()

	ticker := time.NewTicker(a.o.KeepAlive)
	defer ticker.Stop()
	for {
		select {
		case v := <-items:
			write(v)
			if len(items) == 0 {
				if err := s.flush(a.o.KeepAlive); err != nil {
					return err
				}
				ticker.Reset(a.o.KeepAlive) // keep-alives only while idle
			}
		case err := <-done:
			done <- err // for the deferred wait
			// Items queued before the follower returned come first.
			for len(items) > 0 {
				write(<-items)
			}
			if ferr := s.flush(a.o.KeepAlive); ferr != nil {
				return ferr
			}
			return err
		case <-ticker.C:
			if idle != nil && len(items) == 0 && idle(ctx) {
				return nil
			}
			s.comment("keep-alive")
			if err := s.flush(a.o.KeepAlive); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sse writes server-sent events to one client.
type sse struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

// startSSE sends the headers of an event stream.
func (a *API) startSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	s.flush(a.o.KeepAlive)
	return s
}

// event buffers one event. data is sent exactly: SSE ends a field at CR,
// LF or CRLF, so a line's carriage returns cannot travel inside one
// "data:" field. Each CR instead starts a new "data:" field, and an SSE
// client joins the fields of one event with LF. A log line never holds an
// LF, so a client gets the exact text back by turning every LF of the
// data into CR (and event JSON holds neither).
func (s *sse) event(id int64, name, data string) {
	if id > 0 {
		fmt.Fprintf(&s.buf, "id: %d\n", id)
	}
	if name != "" {
		fmt.Fprintf(&s.buf, "event: %s\n", name)
	}
	for {
		part, rest, more := strings.Cut(data, "\r")
		s.buf.WriteString("data: ")
		s.buf.WriteString(part)
		s.buf.WriteByte('\n')
		if !more {
			break
		}
		data = rest
	}
	s.buf.WriteByte('\n')
}

// comment buffers a comment line (ignored by clients; keeps proxies and
// the connection from timing out).
func (s *sse) comment(text string) { fmt.Fprintf(&s.buf, ": %s\n\n", text) }

// end sends "event: end": the stream is complete. It has a data field,
// empty, because browsers dispatch no event without one.
func (s *sse) end() {
	s.event(0, "end", "")
	s.flush(0)
}

// fail sends "event: error" with the error's JSON body.
func (s *sse) fail(body errorBody) {
	data, _ := json.Marshal(body)
	s.event(0, "error", string(data))
	s.flush(0)
}

// flush writes the buffered events and flushes them to the client, with a
// write deadline of keepAlive plus writeGrace (none with 0) so that a
// client that stopped reading is dropped instead of holding the handler.
func (s *sse) flush(keepAlive time.Duration) error {
	if keepAlive > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(keepAlive + writeGrace)) // unsupported writers have none
	}
	if s.buf.Len() > 0 {
		_, err := s.w.Write(s.buf.Bytes())
		s.buf.Reset()
		if err != nil {
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

// wantsSSE reports whether the client asks for an event stream.
func wantsSSE(r *http.Request) bool {
	if truthy(r.URL.Query().Get("follow")) {
		return true
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/event-stream") {
			return true
		}
	}
	return false
}

// truthy reports whether a query flag is set ("1", "true", "yes").
func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// lastEventID reads the Last-Event-ID header, else the query parameter
// param (if named): -1 when neither is set. A value that is not a
// non-negative integer is 400.
func lastEventID(w http.ResponseWriter, r *http.Request, param string) (int64, bool) {
	v, from := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if v == "" && param != "" {
		v, from = r.URL.Query().Get(param), param
	}
	if v == "" {
		return -1, true
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("%s %q: want a non-negative integer", from, v))
		return 0, false
	}
	return n, true
}
