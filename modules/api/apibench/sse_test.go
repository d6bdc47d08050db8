package apibench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/rpc"
)

// jobName is the job of the talking pipeline.
const jobName = "talk"

// talkPipeline is a one-job pipeline that waits until the file
// gate/BUILD_NUMBER exists, then prints lines lines "line I NANOS" one
// every 10 ms (about 100 lines/s), NANOS being the wall clock when the
// line was made.
func talkPipeline(gate string, lines int) string {
	return fmt.Sprintf(`jobs:
  %s:
    script:
      - 'while [ ! -e "%s/$ZEROCI_BUILD_NUMBER" ]; do sleep 0.02; done'
      - 'i=1; while [ $i -le %d ]; do echo "line $i $(date +%%s%%N)"; i=$((i+1)); sleep 0.01; done'
`, jobName, gate, lines)
}

// lineCheck checks one follower's lines as they come: every line id from
// 1 on, each once and in order, and the talking lines "line I NANOS" with
// I = 1, 2, ... up to want; it collects each talking line's delivery
// latency.
type lineCheck struct {
	want    int
	lastID  int64
	lastI   int
	latency []time.Duration
}

// add takes line id with text, received at now.
func (c *lineCheck) add(id int64, text string, now time.Time) error {
	if id != c.lastID+1 {
		return fmt.Errorf("line id %d after %d", id, c.lastID)
	}
	c.lastID = id
	rest, ok := strings.CutPrefix(text, "line ")
	if !ok {
		return nil // a line of the runner's, if any
	}
	is, ns, ok := strings.Cut(rest, " ")
	i, err1 := strconv.Atoi(is)
	nanos, err2 := strconv.ParseInt(ns, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("line %d: %q", id, text)
	}
	if i != c.lastI+1 {
		return fmt.Errorf("line %d: talking line %d after %d", id, i, c.lastI)
	}
	c.lastI = i
	c.latency = append(c.latency, now.Sub(time.Unix(0, nanos)))
	return nil
}

// complete reports whether every talking line came.
func (c *lineCheck) complete() error {
	if c.lastI != c.want {
		return fmt.Errorf("%d talking lines of %d", c.lastI, c.want)
	}
	return nil
}

// followSSE follows the job's log over HTTP with Accept: text/event-stream
// until `event: end`, calling connected once the answer's headers came.
func (s *stack) followSSE(ctx context.Context, repo string, build int64, c *lineCheck, connected func()) error {
	resp, err := s.get(ctx, fmt.Sprintf("/api/v1/repos/%s/builds/%d/jobs/%s/log", repo, build, jobName), "Accept", "text/event-stream")
	if err != nil {
		connected()
		return err
	}
	defer resp.Body.Close()
	connected()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return fmt.Errorf("log stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	var id int64
	var event string
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("log stream ended without event end after line %d: %w", c.lastID, err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "": // dispatch
			switch event {
			case "":
				if data != nil {
					if err := c.add(id, strings.Join(data, "\r"), time.Now()); err != nil {
						return err
					}
				}
			case "end":
				return c.complete()
			default:
				return fmt.Errorf("log stream: event %s: %s", event, strings.Join(data, "\n"))
			}
			event, data = "", nil
		case strings.HasPrefix(line, ":"): // a comment
		case strings.HasPrefix(line, "id: "):
			if id, err = strconv.ParseInt(line[len("id: "):], 10, 64); err != nil {
				return fmt.Errorf("log stream: %q", line)
			}
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		default:
			return fmt.Errorf("log stream: unexpected %q", line)
		}
	}
}

// followDirect is followSSE's baseline: logclient.Follow on the engine's
// node.
func (s *stack) followDirect(ctx context.Context, repo string, build int64, c *lineCheck) error {
	job := contracts.JobRef{Repo: repo, Build: build, Job: jobName}
	err := logclient.Follow(ctx, s.tr, job, 1, func(ln contracts.LogLine) error {
		return c.add(ln.N, ln.Text, time.Now())
	})
	if err != nil {
		return err
	}
	return c.complete()
}

// talker runs builds of the talking pipeline on a stack.
type talker struct {
	s     *stack
	gate  string // the gate directory
	lines int
}

// newTalker registers repoName on s with the talking pipeline of lines
// lines, its gate in a temporary directory.
func newTalker(ctx context.Context, tb testing.TB, s *stack, lines int) *talker {
	tb.Helper()
	gate := tb.TempDir()
	if err := createRepo(ctx, s.tr, repoName, gitRepo(tb, talkPipeline(gate, lines))); err != nil {
		tb.Fatal(err)
	}
	return &talker{s: s, gate: gate, lines: lines}
}

// followRun triggers a build of the talking pipeline, waits until its job
// exists, starts followers followers (over HTTP if overHTTP, else direct),
// opens the gate once every HTTP follower has its answer's headers, and
// returns every delivery latency once all followers got `event: end` (or
// their log closed). Any follower's failure fails the run.
func (t *talker) followRun(ctx context.Context, followers int, overHTTP bool) ([]time.Duration, error) {
	build, err := trigger(ctx, t.s.tr, repoName)
	if err != nil {
		return nil, err
	}
	if err := waitJob(ctx, t.s, repoName, build); err != nil {
		return nil, err
	}
	checks := make([]lineCheck, followers)
	errs := make([]error, followers)
	var connected, done sync.WaitGroup
	connected.Add(followers)
	for i := range followers {
		checks[i].want = t.lines
		done.Add(1)
		go func() {
			defer done.Done()
			if overHTTP {
				errs[i] = t.s.followSSE(ctx, repoName, build, &checks[i], sync.OnceFunc(connected.Done))
				return
			}
			connected.Done()
			errs[i] = t.s.followDirect(ctx, repoName, build, &checks[i])
		}()
	}
	connected.Wait()
	if err := os.WriteFile(filepath.Join(t.gate, strconv.FormatInt(build, 10)), nil, 0o644); err != nil {
		return nil, err
	}
	done.Wait()
	var all []time.Duration
	for i := range checks {
		if errs[i] != nil {
			return nil, fmt.Errorf("follower %d of build %d: %w", i, build, errs[i])
		}
		all = append(all, checks[i].latency...)
	}
	return all, nil
}

// waitJob polls the build until its job exists (the scheduler planned it),
// failing if the build ends first or ctx ends.
func waitJob(ctx context.Context, s *stack, repo string, build int64) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := rpc.Call[contracts.Build](ctx, s.tr, contracts.GetBuild{Repo: repo, Number: build})
		if err != nil {
			return fmt.Errorf("build %d: %w", build, err)
		}
		for _, j := range b.Jobs {
			if j.ID == jobName {
				return nil
			}
		}
		if b.Status.Terminal() {
			return fmt.Errorf("build %d ended %s before its job existed: %s", build, b.Status, b.Error)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for build %d's job: %w", build, ctx.Err())
		}
	}
}
