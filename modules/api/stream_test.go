package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules/api"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// local is every module but the api in this process (server.StartLocal)
// with api modules built from Options of the test's choice, each served by
// an httptest server, and a transport node to reach the modules directly
// (so these tests do not depend on the resource routes).
type local struct {
	t   *testing.T
	tr  transport.Transport
	dir string
}

// apiServer is one api module of a local and its HTTP server.
type apiServer struct {
	api   *api.API
	base  string
	admin string
}

// newLocal starts the modules but the api.
func newLocal(t *testing.T) *local {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Buildscript.AllowLocal = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := server.StartLocal(ctx, cfg, moduletest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return &local{t: t, tr: l.TR, dir: cfg.DataDir}
}

// startAPI starts an api module with o (AllowLocal set) and serves it.
// Its admin token is read from its own data directory.
func (l *local) startAPI(o api.Options) *apiServer {
	t := l.t
	t.Helper()
	o.AllowLocal = true
	a := api.New(o)
	dir := filepath.Join(t.TempDir(), "api")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)                                                                   // runs after the api stopped (cleanups are LIFO)
	moduletest.Start(t, a, moduletest.Host{TR: l.tr, Log: moduletest.Logger(t), Dir: dir}) // Stop ends the streams
	s := &apiServer{api: a, base: srv.URL}
	if tok, err := os.ReadFile(filepath.Join(dir, api.AdminTokenFile)); err == nil {
		s.admin = strings.TrimSpace(string(tok))
	}
	return s
}

// call sends a request to a module.
func lcall[R any, PR interface {
	*R
	contracts.Message
}](l *local, req contracts.Message) R {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := rpc.Call[R, PR](ctx, l.tr, req)
	if err != nil {
		l.t.Fatalf("%s: %v", req.MessageType(), err)
	}
	return res
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}

// waitBuild waits until build n of repo is finished and returns it.
func (l *local) waitBuild(repo string, n int64) contracts.Build {
	l.t.Helper()
	var b contracts.Build
	waitFor(l.t, 60*time.Second, fmt.Sprintf("build %s#%d to finish", repo, n), func() bool {
		b = lcall[contracts.Build](l, contracts.GetBuild{Repo: repo, Number: n})
		return b.Status.Terminal()
	})
	return b
}

// pipelineRepo creates repo from a git repository whose pipeline is yaml.
func (l *local) pipelineRepo(name, yaml string, secret contracts.Secret, poll int64) (dir string) {
	l.t.Helper()
	dir = gittest.Repo(l.t, map[string]string{".zeroci/pipeline.yaml": yaml})
	lcall[contracts.Repo](l, contracts.CreateRepo{Name: name, URL: dir, WebhookSecret: secret, PollSeconds: poll})
	return dir
}

// get sends a GET with the admin token and extra headers.
func (s *apiServer) get(t *testing.T, path string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", s.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.admin)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// body reads a whole answer.
func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sseEvent is one parsed server-sent event (or a comment, with comment set).
type sseEvent struct {
	id, event, data string
	hasID           bool
	comment         bool
}

// sseReader parses an event stream as a browser does (fields end at CR,
// LF or CRLF; data fields are joined with LF).
type sseReader struct {
	t  *testing.T
	rd *bufio.Reader
}

func newSSE(t *testing.T, resp *http.Response) *sseReader {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d %s", resp.StatusCode, body(t, resp))
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); !strings.HasPrefix(got, v) {
			t.Fatalf("header %s: %q, want %q", k, got, v)
		}
	}
	return &sseReader{t: t, rd: bufio.NewReader(resp.Body)}
}

// line reads one line ending at CR, LF or CRLF.
func (r *sseReader) line() (string, error) {
	var sb strings.Builder
	for {
		c, err := r.rd.ReadByte()
		if err != nil {
			return sb.String(), err
		}
		switch c {
		case '\n':
			return sb.String(), nil
		case '\r':
			if next, err := r.rd.Peek(1); err == nil && next[0] == '\n' {
				r.rd.ReadByte()
			}
			return sb.String(), nil
		}
		sb.WriteByte(c)
	}
}

// next reads the next event or comment block.
func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	seen := false
	for {
		ln, err := r.line()
		if err != nil {
			return ev, err
		}
		if ln == "" {
			if seen {
				ev.data = strings.Join(data, "\n")
				return ev, nil
			}
			continue
		}
		seen = true
		if strings.HasPrefix(ln, ":") {
			ev.comment = true
			continue
		}
		field, value, _ := strings.Cut(ln, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id, ev.hasID = value, true
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		}
	}
}

// nextEvent skips comments.
func (r *sseReader) nextEvent() sseEvent {
	r.t.Helper()
	for {
		ev, err := r.next()
		if err != nil {
			r.t.Fatalf("reading the stream: %v", err)
		}
		if !ev.comment || ev.hasID || ev.event != "" {
			return ev
		}
	}
}

// logLines reads log events until "event: end", checking their ids go on
// from first, and returns the lines (with CR restored).
func (r *sseReader) logLines(first int64) []string {
	r.t.Helper()
	var out []string
	for {
		ev := r.nextEvent()
		if ev.event == "end" {
			return out
		}
		if ev.event != "" {
			r.t.Fatalf("event %q: %s", ev.event, ev.data)
		}
		if want := strconv.FormatInt(first+int64(len(out)), 10); ev.id != want {
			r.t.Fatalf("id %q, want %s", ev.id, want)
		}
		out = append(out, strings.ReplaceAll(ev.data, "\n", "\r"))
	}
}

const crPipeline = `jobs:
  hello:
    script:
      - echo first
      - printf 'progress 10%%\rprogress 100%%\r\n'
      - echo
      - "printf '  spaced: colon\\n'"
      - printf 'tail cr\r\n'
      - echo 'ünïcode ✓'
`

var crLines = []string{"first", "progress 10%\rprogress 100%\r", "", "  spaced: colon", "tail cr\r", "ünïcode ✓"}

// TestLogPlainAndSSE: a finished job's log as text (exact lines, with and
// without timestamps) and as events (exact text, CRs included, then end);
// errors before streaming are JSON.
func TestLogPlainAndSSE(t *testing.T) {
	l := newLocal(t)
	s := l.startAPI(api.Options{})
	l.pipelineRepo("cr", crPipeline, "", 0)
	lcall[contracts.Build](l, contracts.TriggerBuild{Repo: "cr", Event: contracts.TriggerManual})
	if b := l.waitBuild("cr", 1); b.Status != contracts.BuildStatusSuccess {
		t.Fatalf("build: %+v", b)
	}
	path := "/api/v1/repos/cr/builds/1/jobs/hello/log"

	resp := s.get(t, path)
	if got := body(t, resp); resp.StatusCode != 200 || got != strings.Join(crLines, "\n")+"\n" {
		t.Fatalf("plain log: %d %q", resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}

	resp = s.get(t, path+"?timestamps=1")
	lines := strings.Split(strings.TrimSuffix(body(t, resp), "\n"), "\n")
	if len(lines) != len(crLines) {
		t.Fatalf("timestamps: %d lines %q", len(lines), lines)
	}
	for i, ln := range lines {
		ts, text, _ := strings.Cut(ln, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || text != crLines[i] {
			t.Fatalf("line %d %q: %v", i+1, ln, err)
		}
	}

	for _, h := range [][]string{{"Accept", "text/event-stream"}, nil} {
		p := path
		if h == nil {
			p += "?follow=1"
		}
		resp = s.get(t, p, h...)
		got := newSSE(t, resp).logLines(1)
		resp.Body.Close()
		if strings.Join(got, "\n") != strings.Join(crLines, "\n") {
			t.Fatalf("events: %q, want %q", got, crLines)
		}
	}

	// Resuming after the last line: only the end.
	resp = s.get(t, path+"?follow=1", "Last-Event-ID", strconv.Itoa(len(crLines)))
	if got := newSSE(t, resp).logLines(int64(len(crLines) + 1)); len(got) != 0 {
		t.Fatalf("after the last line: %q", got)
	}
	resp.Body.Close()

	for p, want := range map[string]int{
		"/api/v1/repos/cr/builds/1/jobs/nope/log?follow=1": 404,
		"/api/v1/repos/cr/builds/9/jobs/hello/log":         404,
		"/api/v1/repos/nope/builds/1/jobs/hello/log":       404,
		"/api/v1/repos/cr/builds/x/jobs/hello/log":         400,
		"/api/v1/repos/cr/builds/0/jobs/hello/log":         400,
	} {
		resp := s.get(t, p)
		got := body(t, resp)
		var eb struct{ Error, Code string }
		if resp.StatusCode != want || json.Unmarshal([]byte(got), &eb) != nil || eb.Code == "" {
			t.Errorf("%s: %d %s, want %d and a JSON error", p, resp.StatusCode, got, want)
		}
	}
	resp = s.get(t, path, "Last-Event-ID", "-3", "Accept", "text/event-stream")
	if resp.StatusCode != 400 {
		t.Errorf("bad Last-Event-ID: %d", resp.StatusCode)
	}
	body(t, resp)
	req, _ := http.NewRequest("GET", s.base+path, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestLogFollowResume: a live log followed as events, with keep-alives
// while the job is idle; the client drops the connection after some lines
// and reconnects with Last-Event-ID, and gets the rest: nothing lost or
// repeated, then end.
func TestLogFollowResume(t *testing.T) {
	l := newLocal(t)
	s := l.startAPI(api.Options{KeepAlive: 50 * time.Millisecond})
	gate := filepath.Join(t.TempDir(), "go")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) }) // never leave the job waiting
	l.pipelineRepo("live", fmt.Sprintf(`jobs:
  slow:
    script:
      - for i in 1 2 3 4 5; do echo "before $i"; done
      - while [ ! -e %q ]; do sleep 0.02; done
      - for i in 1 2 3 4 5; do echo "after $i"; done
`, gate), "", 0)
	lcall[contracts.Build](l, contracts.TriggerBuild{Repo: "live", Event: contracts.TriggerManual})
	path := "/api/v1/repos/live/builds/1/jobs/slow/log"

	// The job may not have started: 404 until the build has its jobs.
	waitFor(t, 30*time.Second, "the job", func() bool {
		b := lcall[contracts.Build](l, contracts.GetBuild{Repo: "live", Number: 1})
		return len(b.Jobs) > 0
	})
	resp := s.get(t, path, "Accept", "text/event-stream")
	r := newSSE(t, resp)
	for i := 1; i <= 3; i++ {
		ev := r.nextEvent()
		if ev.id != strconv.Itoa(i) || ev.data != fmt.Sprintf("before %d", i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	resp.Body.Close() // drop the connection

	resp = s.get(t, path, "Accept", "text/event-stream", "Last-Event-ID", "3")
	r = newSSE(t, resp)
	defer resp.Body.Close()
	var got []string
	for len(got) < 2 {
		ev := r.nextEvent()
		got = append(got, ev.id+" "+ev.data)
	}
	// The job waits for the gate: the stream is idle and gets keep-alives.
	for {
		ev, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.comment {
			break
		}
		t.Fatalf("while idle: %+v", ev)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ln := range r.logLines(6) {
		got = append(got, ln)
	}
	want := []string{"4 before 4", "5 before 5", "after 1", "after 2", "after 3", "after 4", "after 5"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("after reconnecting: %q, want %q", got, want)
	}
}

// TestLogStalledReader: a follower that stops reading does not slow
// another follower of the same log, which gets every line to the end.
func TestLogStalledReader(t *testing.T) {
	l := newLocal(t)
	s := l.startAPI(api.Options{})
	const n = 30000 // ~6 MB: more than the stalled connection's buffers hold
	l.pipelineRepo("big", fmt.Sprintf(`jobs:
  big:
    script:
      - yes '%s' | head -n %d
`, strings.Repeat("x", 200), n), "", 0)
	lcall[contracts.Build](l, contracts.TriggerBuild{Repo: "big", Event: contracts.TriggerManual})
	waitFor(t, 30*time.Second, "the job", func() bool {
		b := lcall[contracts.Build](l, contracts.GetBuild{Repo: "big", Number: 1})
		return len(b.Jobs) > 0
	})
	path := "/api/v1/repos/big/builds/1/jobs/big/log?follow=1"
	stalled := s.get(t, path)
	defer stalled.Body.Close()
	newSSE(t, stalled) // headers only; never read

	reading := s.get(t, path)
	defer reading.Body.Close()
	done := make(chan error, 1)
	go func() {
		r := &sseReader{t: t, rd: bufio.NewReader(reading.Body)}
		count := 0
		for {
			ev, err := r.next()
			if err != nil {
				done <- fmt.Errorf("after %d lines: %w", count, err)
				return
			}
			switch {
			case ev.event == "end":
				if count != n {
					done <- fmt.Errorf("%d lines, want %d", count, n)
					return
				}
				done <- nil
				return
			case ev.hasID:
				count++
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the reading follower did not finish while another stalled")
	}
}

// TestEvents: the event stream replays from ?since= or Last-Event-ID with
// consecutive ids, filters by ?repo=, starts at the head by default, sends
// keep-alives, and refuses a bad start.
func TestEvents(t *testing.T) {
	l := newLocal(t)
	s := l.startAPI(api.Options{KeepAlive: 50 * time.Millisecond})
	lcall[contracts.Repo](l, contracts.CreateRepo{Name: "one", URL: "https://example.com/one.git"})
	lcall[contracts.Repo](l, contracts.CreateRepo{Name: "two", URL: "https://example.com/two.git"})

	// Everything from the beginning: ids 1, 2, 3... up to two's creation.
	resp := s.get(t, "/api/v1/events?since=0")
	r := newSSE(t, resp)
	var twoSeq int64
	for seq := int64(1); twoSeq == 0; seq++ {
		ev := r.nextEvent()
		var e contracts.Event
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil || ev.id != strconv.FormatInt(seq, 10) || e.Seq != seq {
			t.Fatalf("event %d: %+v (%v)", seq, ev, err)
		}
		if e.Type == contracts.TypeRepoCreated && e.Repo == "two" {
			twoSeq = seq
		}
	}
	resp.Body.Close()

	// Resume after Last-Event-ID (which wins over ?since=).
	resp = s.get(t, "/api/v1/events?since=0", "Last-Event-ID", strconv.FormatInt(twoSeq-1, 10))
	if ev := newSSE(t, resp).nextEvent(); ev.id != strconv.FormatInt(twoSeq, 10) {
		t.Fatalf("resumed at %+v, want %d", ev, twoSeq)
	}
	resp.Body.Close()

	// Filtered: only two's events.
	resp = s.get(t, "/api/v1/events?since=0&repo=two")
	ev := newSSE(t, resp).nextEvent()
	if !strings.Contains(ev.data, `"repo":"two"`) || ev.id != strconv.FormatInt(twoSeq, 10) {
		t.Fatalf("filtered: %+v", ev)
	}
	resp.Body.Close()

	// Once past the head as it was at the start, "caught-up" says so, even
	// when the head's event is filtered out; a start at the head says so
	// at once.
	resp = s.get(t, "/api/v1/events?since=0&repo=one")
	r = newSSE(t, resp)
	var last string
	for ev = r.nextEvent(); ev.event != "caught-up"; ev = r.nextEvent() {
		if !strings.Contains(ev.data, `"repo":"one"`) {
			t.Fatalf("filtered for one: %+v", ev)
		}
		last = ev.id
	}
	if ev.hasID || ev.data != strconv.FormatInt(twoSeq, 10) || last == "" {
		t.Fatalf("caught-up %+v after %s, want data %d and no id", ev, last, twoSeq)
	}
	resp.Body.Close()
	resp = s.get(t, "/api/v1/events", "Last-Event-ID", strconv.FormatInt(twoSeq, 10))
	if ev := newSSE(t, resp).nextEvent(); ev.event != "caught-up" {
		t.Fatalf("a start at the head: %+v, want caught-up first", ev)
	}
	resp.Body.Close()

	// No start: from the head on, with keep-alives while idle.
	resp = s.get(t, "/api/v1/events")
	r = newSSE(t, resp)
	defer resp.Body.Close()
	if ev := r.nextEvent(); ev.event != "caught-up" {
		t.Fatalf("a stream from the head: %+v, want caught-up first", ev)
	}
	if ev, err := r.next(); err != nil || !ev.comment {
		t.Fatalf("idle stream: %+v %v", ev, err)
	}
	lcall[contracts.Repo](l, contracts.CreateRepo{Name: "three", URL: "https://example.com/three.git"})
	ev = r.nextEvent()
	if seq, _ := strconv.ParseInt(ev.id, 10, 64); seq <= twoSeq || !strings.Contains(ev.data, `"repo":"three"`) {
		t.Fatalf("live: %+v", ev)
	}

	for _, p := range []string{"/api/v1/events?since=x", "/api/v1/events?since=-1", "/api/v1/events?repo=Bad%20Name"} {
		resp := s.get(t, p)
		if got := body(t, resp); resp.StatusCode != 400 || !strings.Contains(got, `"code":"invalid_argument"`) {
			t.Errorf("%s: %d %s", p, resp.StatusCode, got)
		}
	}
}

// TestStreamsEndOnStop: stopping the api ends its open streams.
func TestStreamsEndOnStop(t *testing.T) {
	l := newLocal(t)
	s := l.startAPI(api.Options{KeepAlive: time.Hour})
	resp := s.get(t, "/api/v1/events")
	defer resp.Body.Close()
	r := newSSE(t, resp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.api.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.next(); err != nil {
			break // the stream ended
		}
	}
}
