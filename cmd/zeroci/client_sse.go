package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sseEvent is one server-sent event, or one comment line (keep-alive).
type sseEvent struct {
	ID      string // the id: field; empty when the event has none
	Event   string // the event: field; empty means "message"
	Data    string // the data: lines joined with "\n"
	Comment bool   // a ": ..." line: the server is alive but has nothing to send
}

// errStopStream, returned by an event callback, ends a stream cleanly.
var errStopStream = errors.New("stop the stream")

// Reconnection of a followed stream after a dropped connection.
const (
	sseRetryMin      = 200 * time.Millisecond
	sseRetryMax      = 5 * time.Second
	sseRetryAttempts = 10 // connection failures in a row, without a new event, before giving up
)

// readSSE calls fn with each event of the stream r, in order, until r ends
// (nil, or the read error) or fn returns an error (errStopStream: nil).
// Lines end with "\n" (a "\r" before it is dropped); an event whose blank
// line did not arrive is incomplete and not delivered.
func readSSE(r io.Reader, fn func(sseEvent) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var ev sseEvent
	var data []string
	hasData := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" { // dispatch
			if hasData || ev.Event != "" {
				ev.Data = strings.Join(data, "\n")
				if err := fn(ev); err != nil {
					return stopIsNil(err)
				}
			}
			ev, data, hasData = sseEvent{}, data[:0], false
			continue
		}
		if strings.HasPrefix(line, ":") {
			if err := fn(sseEvent{Comment: true, Data: strings.TrimPrefix(line[1:], " ")}); err != nil {
				return stopIsNil(err)
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
			hasData = true
		}
	}
}

func stopIsNil(err error) error {
	if errors.Is(err, errStopStream) {
		return nil
	}
	return err
}

// followSSE reads the server-sent events at the path pathFor(last) gives,
// where last is the id of the last event delivered ("" before the first),
// until fn returns errStopStream (nil), another error (returned), or ctx
// ends. A dropped connection or an unavailable server is transparent: it
// reconnects with Last-Event-ID, so no event is lost; an event whose
// numeric id is not above the last one's is a repeat and skipped. It gives
// up after sseRetryAttempts failures in a row; an error answer other than
// 5xx ends it at once.
func (c *apiClient) followSSE(ctx context.Context, last string, pathFor func(last string) string, fn func(sseEvent) error) error {
	backoff := sseRetryMin
	failures := 0
	for {
		progress, done, err := c.sseOnce(ctx, &last, pathFor(last), fn)
		if done {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if progress {
			failures, backoff = 0, sseRetryMin
		}
		failures++
		if failures >= sseRetryAttempts {
			if err == nil {
				err = errors.New("the stream ended early")
			}
			return err
		}
		if !sleepCtx(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, sseRetryMax)
	}
}

// sseOnce reads one connection of followSSE. progress says an event came;
// done says the stream is over for good (fn stopped or failed, or the
// server refused the request), with err the result.
func (c *apiClient) sseOnce(ctx context.Context, last *string, path string, fn func(sseEvent) error) (progress, done bool, err error) {
	header := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if *last != "" {
		header.Set("Last-Event-ID", *last)
	}
	resp, err := c.open(ctx, http.MethodGet, path, nil, header)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status < 500 {
			return false, true, err
		}
		return false, false, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, true, &apiError{Status: resp.StatusCode, Message: "server answered " + ct + ", not an event stream"}
	}
	stopped := false
	rerr := readSSE(resp.Body, func(ev sseEvent) error {
		if ev.Comment {
			if err := fn(ev); err != nil {
				stopped = true
				return err
			}
			return nil
		}
		if ev.ID != "" && !after(ev.ID, *last) {
			return nil // a repeat
		}
		progress = true
		if ev.ID != "" {
			*last = ev.ID
		}
		if err := fn(ev); err != nil {
			stopped = true
			return err
		}
		return nil
	})
	if stopped {
		return progress, true, rerr
	}
	return progress, false, rerr
}

// after reports whether id comes after last; ids that are not numbers are
// taken as new.
func after(id, last string) bool {
	n, err1 := strconv.ParseInt(id, 10, 64)
	l, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return n > l
}

// sleepCtx waits d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
