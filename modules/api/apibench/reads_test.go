package apibench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
)

// listLimit is the page size of the list reads.
const listLimit = 50

// readFn does one read; i numbers the request, which picks the build a
// "show" read asks for.
type readFn func(ctx context.Context, i int) error

// pick spreads request i over builds 1..total: the prime stride walks all
// of them before repeating (for any total that is not a multiple of it).
func pick(i, total int) int64 { return int64(i*7919%total + 1) }

// httpShow reads builds over GET /api/v1/repos/{repo}/builds/{n} and
// checks the answer names the build asked for.
func (s *stack) httpShow(repo string, total int) readFn {
	return func(ctx context.Context, i int) error {
		n := pick(i, total)
		body, err := s.read(ctx, fmt.Sprintf("/api/v1/repos/%s/builds/%d", repo, n))
		if err != nil {
			return err
		}
		if !bytes.Contains(body, []byte(`"number":`+strconv.FormatInt(n, 10)+",")) {
			return fmt.Errorf("build %d: answer %.200s", n, body)
		}
		return nil
	}
}

// httpList reads the newest page over GET /api/v1/repos/{repo}/builds.
func (s *stack) httpList(repo string) readFn {
	path := fmt.Sprintf("/api/v1/repos/%s/builds?limit=%d", repo, listLimit)
	return func(ctx context.Context, _ int) error {
		body, err := s.read(ctx, path)
		if err != nil {
			return err
		}
		if len(body) < 2 || body[0] != '[' {
			return fmt.Errorf("list: answer %.200s", body)
		}
		return nil
	}
}

// read GETs path and returns the body of a 200 answer.
func (s *stack) read(ctx context.Context, path string) ([]byte, error) {
	resp, err := s.get(ctx, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %.200s", path, resp.StatusCode, body)
	}
	return body, nil
}

// rpcShow is httpShow's baseline: datastore.get_build on the engine's node.
func (s *stack) rpcShow(repo string, total int) readFn {
	return func(ctx context.Context, i int) error {
		n := pick(i, total)
		b, err := rpc.Call[contracts.Build](ctx, s.tr, contracts.GetBuild{Repo: repo, Number: n})
		if err != nil {
			return fmt.Errorf("get build %d: %w", n, err)
		}
		if b.Number != n {
			return fmt.Errorf("get build %d: got %d", n, b.Number)
		}
		return nil
	}
}

// rpcList is httpList's baseline: datastore.list_builds.
func (s *stack) rpcList(repo string) readFn {
	return func(ctx context.Context, _ int) error {
		l, err := rpc.Call[contracts.BuildList](ctx, s.tr, contracts.ListBuilds{Repo: repo, Limit: listLimit})
		if err != nil {
			return fmt.Errorf("list builds: %w", err)
		}
		if len(l.Builds) != listLimit {
			return fmt.Errorf("list builds: %d builds, want %d", len(l.Builds), listLimit)
		}
		return nil
	}
}

// checkReads checks, in full, one answer of each HTTP read against the
// store's total builds: the list holds the newest listLimit builds, newest
// first, and a build shows its number and status queued.
func (s *stack) checkReads(ctx context.Context, repo string, total int) error {
	body, err := s.read(ctx, fmt.Sprintf("/api/v1/repos/%s/builds?limit=%d", repo, listLimit))
	if err != nil {
		return err
	}
	var list []contracts.Build
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	got := make([]int64, len(list))
	for i, b := range list {
		got[i] = b.Number
	}
	var want []int64
	for n := int64(total); n > int64(total-listLimit) && n > 0; n-- {
		want = append(want, n)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("list: builds %v, want %v", got, want)
	}
	n := pick(1, total)
	body, err = s.read(ctx, fmt.Sprintf("/api/v1/repos/%s/builds/%d", repo, n))
	if err != nil {
		return err
	}
	var b contracts.Build
	if err := json.Unmarshal(body, &b); err != nil {
		return fmt.Errorf("show: %w", err)
	}
	if b.Number != n || b.Repo != repo || b.Status != contracts.BuildStatusQueued {
		return fmt.Errorf("show %d: %s#%d %s", n, b.Repo, b.Number, b.Status)
	}
	return nil
}

// closedLoop runs clients goroutines that each send the next read as soon
// as the last one answered, for d, and returns the reads done per second.
// The first failed read ends the run with its error.
func closedLoop(ctx context.Context, read readFn, clients int, d time.Duration) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var done atomic.Int64
	var once sync.Once
	var failed error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := read(ctx, int(next.Add(1))); err != nil {
					once.Do(func() { failed = err; cancel() })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return 0, failed
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(done.Load()) / time.Since(start).Seconds(), nil
}

// openLoop sends n reads on a fixed schedule, one every interval, each on
// its own goroutine whatever the earlier ones do, and returns each read's
// latency measured from its scheduled send time (so that a sender or
// server falling behind shows as latency). A ticker wakes the sender; at
// each tick it sends every read whose time has come.
func openLoop(ctx context.Context, read readFn, n int, interval time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lat := make([]time.Duration, n)
	var once sync.Once
	var failed error
	var wg sync.WaitGroup
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	start := time.Now()
	for sent := 0; sent < n; {
		now := time.Now()
		for ; sent < n; sent++ {
			at := start.Add(time.Duration(sent) * interval)
			if at.After(now) {
				break
			}
			wg.Add(1)
			go func(i int, at time.Time) {
				defer wg.Done()
				err := read(ctx, i)
				lat[i] = time.Since(at)
				if err != nil {
					once.Do(func() { failed = err; cancel() })
				}
			}(sent, at)
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			sent = n
		}
	}
	wg.Wait()
	if failed != nil {
		return nil, failed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return lat, nil
}
