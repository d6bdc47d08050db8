//go:build unix

package jobs

import (
	"context"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
)

// renew renews the job's lease every heartbeat until ctx ends. A lease
// with Cancel set stops the job as canceled; a conflict or not found
// (the scheduler gave the lease up), or a deadline that passes without a
// renewal, stops it as lost. While the scheduler is unreachable it keeps
// trying.
func (j *job) renew(ctx context.Context) {
	j.r.mu.Lock()
	every := time.Duration(j.r.welcome.HeartbeatMs) * time.Millisecond
	j.r.mu.Unlock()
	if every <= 0 {
		every = time.Second
	}
	deadline := j.a.Deadline
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lease, err := j.renewOnce(ctx, every)
		switch code := contracts.CodeOf(err); {
		case err == nil:
			deadline = lease.Deadline
			if lease.Cancel {
				j.log.Info().Str("reason", lease.Reason).Msg("scheduler canceled the job")
				j.stop(canceled(lease.Reason))
			}
		case ctx.Err() != nil:
			return
		case code == contracts.CodeConflict || code == contracts.CodeNotFound:
			j.log.Warn().Err(err).Msg("lease renewal refused")
			j.stop(errLeaseLost)
		default:
			j.log.Debug().Err(err).Msg("lease renewal failed; retrying")
			if time.Now().After(deadline) {
				j.log.Warn().Time("deadline", deadline).Msg("lease expired without renewal")
				j.stop(errLeaseLost)
			}
		}
	}
}

// renewOnce sends one dispatch.renew.
func (j *job) renewOnce(ctx context.Context, timeout time.Duration) (contracts.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, max(timeout, time.Second))
	defer cancel()
	return rpc.Call[contracts.Lease](ctx, j.r.tr, contracts.RenewLease{RunnerID: j.r.id, LeaseID: j.a.LeaseID})
}
