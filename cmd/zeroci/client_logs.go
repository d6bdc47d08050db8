package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newLogsCmd returns `zeroci logs REPO NUMBER JOB [-f]`.
func newLogsCmd() *cobra.Command {
	o := &clientOpts{}
	var follow, timestamps bool
	cmd := &cobra.Command{
		Use:   "logs REPO NUMBER JOB [-f]",
		Short: "Print a job's log",
		Long: `Print the log of job JOB of build NUMBER of REPO, each line exactly as the
job printed it (colours included). -f follows the log live until the job
ends; a dropped connection is resumed where it stopped, with no line lost
or repeated. --timestamps prefixes each line with its time (not with -f).`,
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, n, err := o.buildClient(cmd, args)
			if err != nil {
				return err
			}
			path := apiPath("repos", args[0], "builds", strconv.FormatInt(n, 10), "jobs", args[2], "log")
			if follow {
				if err := c.waitForJob(cmdContext(cmd), args[0], n, args[2]); err != nil {
					return clientFailed(err)
				}
				return clientFailed(c.followLog(cmdContext(cmd), path, func(text string) error {
					_, err := fmt.Fprintln(c.out, text)
					return err
				}))
			}
			if timestamps {
				path += "?timestamps=1"
			}
			return clientFailed(c.copyLog(cmdContext(cmd), path))
		},
	}
	addClientFlags(cmd, o)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the log until the job ends")
	cmd.Flags().BoolVar(&timestamps, "timestamps", false, "prefix each line with its RFC 3339 time")
	return cmd
}

// waitForJob waits while the build is queued (its jobs are not planned
// yet), so that `logs -f` right after a trigger follows the job rather than
// failing; then it checks the build has the job.
func (c *apiClient) waitForJob(ctx context.Context, repo string, n int64, job string) error {
	for {
		data, err := c.call(ctx, http.MethodGet, apiPath("repos", repo, "builds", strconv.FormatInt(n, 10)), nil)
		if err != nil {
			return err
		}
		var b buildJSON
		if err := json.Unmarshal(data, &b); err != nil {
			return fmt.Errorf("reading build %d: %w", n, err)
		}
		if b.Status != "queued" {
			ids := make([]string, len(b.Jobs))
			for i, j := range b.Jobs {
				if j.ID == job {
					return nil
				}
				ids[i] = j.ID
			}
			if len(ids) == 0 {
				return fmt.Errorf("build %s #%d has no jobs (%s%s)", repo, n, b.Status, errorSuffix(b.Error))
			}
			return fmt.Errorf("build %s #%d has no job %q (jobs: %s)", repo, n, job, strings.Join(ids, ", "))
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func errorSuffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// copyLog writes the log at path, as text, to c.out.
func (c *apiClient) copyLog(ctx context.Context, path string) error {
	resp, err := c.open(ctx, http.MethodGet, path, nil, http.Header{"Accept": {"text/plain"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(c.out, resp.Body); err != nil {
		return fmt.Errorf("reading the log: %w", err)
	}
	return nil
}

// followLog calls fn with each line of the log at path, live, until the
// server sends `event: end` (nil), resuming after a dropped connection.
func (c *apiClient) followLog(ctx context.Context, path string, fn func(text string) error) error {
	return c.followSSE(ctx, "", func(string) string { return path }, func(ev sseEvent) error {
		switch {
		case ev.Comment:
			return nil
		case ev.Event == "end":
			return errStopStream
		case ev.Event == "" || ev.Event == "message":
			// A line's carriage returns travel as data field breaks,
			// which readSSE joined with LF; a log line has no LF.
			return fn(strings.ReplaceAll(ev.Data, "\n", "\r"))
		case ev.Event == "error":
			return streamError(ev.Data)
		}
		return nil
	})
}

// eventJSON is the part of a hub event the table shows.
type eventJSON struct {
	Seq   int64     `json:"seq"`
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	Repo  string    `json:"repo"`
	Build int64     `json:"build"`
	Job   string    `json:"job"`
}

// newEventsCmd returns `zeroci events [-f] [--since SEQ]`.
func newEventsCmd() *cobra.Command {
	o := &clientOpts{}
	var follow bool
	var since int64
	var repo string
	cmd := &cobra.Command{
		Use:   "events [-f] [--since SEQ] [--repo REPO]",
		Short: "Print the event hub's events",
		Long: `Print the events after sequence number SEQ (default 0: from the beginning),
one per line: sequence, time, type and subject; --json prints each event's
JSON on its own line. -f keeps following new events (resuming after a
dropped connection); without it, the command ends with the last event
the server held when it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return usageError("--since %d: want 0 or more", since)
			}
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			e := &eventPrinter{c: c, json: o.json}
			ctx := cmdContext(cmd)
			if follow {
				return clientFailed(c.followSSE(ctx, strconv.FormatInt(since, 10), eventsPath(repo), e.print))
			}
			return clientFailed(c.eventsSoFar(ctx, eventsPath(repo)(strconv.FormatInt(since, 10)), e.print))
		},
	}
	addClientFlags(cmd, o)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep following new events")
	cmd.Flags().Int64Var(&since, "since", 0, "start after this sequence number (0: from the beginning)")
	cmd.Flags().StringVar(&repo, "repo", "", "only this repository's events")
	_ = cmd.RegisterFlagCompletionFunc("repo", func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		return completeRepos(o, 0)(cmd, nil, prefix)
	})
	return cmd
}

// eventsPath returns the events route starting after the sequence last.
func eventsPath(repo string) func(last string) string {
	return func(last string) string {
		q := url.Values{}
		if last == "" {
			last = "0"
		}
		q.Set("since", last)
		if repo != "" {
			q.Set("repo", repo)
		}
		return apiPath("events") + "?" + q.Encode()
	}
}

// eventsSoFar reads the event stream at path up to the server's
// "caught-up" event, which it sends once it has passed the hub's head as it
// was when the stream started: the events stored so far.
func (c *apiClient) eventsSoFar(ctx context.Context, path string, fn func(sseEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.open(ctx, http.MethodGet, path, nil, http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	caughtUp := false
	err = readSSE(resp.Body, func(ev sseEvent) error {
		if ev.Event == "caught-up" {
			caughtUp = true
			return errStopStream
		}
		return fn(ev)
	})
	if err == nil && !caughtUp {
		return errors.New("the event stream ended before the server caught up")
	}
	return err
}

// eventPrinter prints hub events, as a table line or as JSON lines.
type eventPrinter struct {
	c    *apiClient
	json bool
}

func (e *eventPrinter) print(ev sseEvent) error {
	if ev.Comment || (ev.Event != "" && ev.Event != "message") {
		if ev.Event == "error" {
			return streamError(ev.Data)
		}
		return nil
	}
	if e.json {
		_, err := fmt.Fprintln(e.c.out, ev.Data)
		return err
	}
	var v eventJSON
	if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
		return fmt.Errorf("event %s: %w", ev.ID, err)
	}
	subject := v.Repo
	if v.Build > 0 {
		subject += "#" + strconv.FormatInt(v.Build, 10)
	}
	if v.Job != "" {
		subject += "/" + v.Job
	}
	_, err := fmt.Fprintf(e.c.out, "%d\t%s\t%-16s\t%s\n", v.Seq, v.Time.Local().Format(time.DateTime), v.Type, subject)
	return err
}

// streamError is the error an "event: error" of a stream carries: the
// API's {"error", "code"} JSON, or plain text.
func streamError(data string) error {
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal([]byte(data), &body) == nil && body.Error != "" {
		return &apiError{Message: body.Error, Code: body.Code}
	}
	return fmt.Errorf("the stream failed: %s", data)
}
