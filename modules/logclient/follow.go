package logclient

import (
	"context"
	"fmt"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// FollowWait is how long one read of Follow waits for new lines before it
// asks again.
const FollowWait = 20 * time.Second

// followSlack is added to FollowWait for a read's deadline.
const followSlack = 10 * time.Second

// Read reads up to limit lines of job's log from line from on (0 means as
// many as fit in one answer), without waiting (logging.read).
func Read(ctx context.Context, rq transport.Requester, job contracts.JobRef, from int64, limit int) (contracts.LogLines, error) {
	return rpc.Call[contracts.LogLines](ctx, rq, contracts.ReadLog{Job: job, From: from, Limit: limit}, transport.Idempotent())
}

// Follow calls fn with every line of job's log from line from on (from 1
// if from < 1), in order, each once: first the lines stored, then new
// lines as they come. It returns nil once the log is closed and fn has had
// its last line, fn's error if fn fails, or ctx's when ctx ends. While the
// module is unavailable it retries from the line after the last one
// delivered; so does a follower that calls Follow again with the line after
// the last one it holds.
func Follow(ctx context.Context, rq transport.Requester, job contracts.JobRef, from int64, fn func(contracts.LogLine) error) error {
	next := max(from, 1)
	backoff := retryMin
	for {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, FollowWait+followSlack)
		res, err := rpc.Call[contracts.LogLines](rctx, rq,
			contracts.ReadLog{Job: job, From: next, WaitMs: FollowWait.Milliseconds()}, transport.Idempotent())
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if contracts.CodeOf(err) != contracts.CodeUnavailable {
				return fmt.Errorf("logclient: follow %s at line %d: %w", job, next, err)
			}
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, retryMax)
			continue
		}
		backoff = retryMin
		for _, ln := range res.Lines {
			if ln.N != next {
				return fmt.Errorf("logclient: follow %s: got line %d, want %d", job, ln.N, next)
			}
			if err := fn(ln); err != nil {
				return err
			}
			next++
		}
		if res.Closed {
			return nil
		}
		// An empty answer well before the wait was up: the module did not
		// wait (it had too many waiting readers). Do not spin.
		if len(res.Lines) == 0 && time.Since(start) < FollowWait/2 {
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
