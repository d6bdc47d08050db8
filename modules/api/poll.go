package api

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gitrepo"
)

// Polling tuning.
const (
	// pollListEvery bounds how long a new or changed repository waits to
	// be noticed.
	pollListEvery = 30 * time.Second
	// pollWorkers is how many repositories are checked at once.
	pollWorkers = 4
	// pollRetry is how long the poller waits when it cannot start or list.
	pollRetry = 5 * time.Second
)

// poll checks repositories without webhooks for new commits: every
// repository with poll_seconds > 0 has its default branch's head asked of
// its remote (git ls-remote, nothing fetched), and each new head triggers a
// push build with the dedup key "poll:"+head, so api processes polling the
// same repository trigger it once. The interval is a.o.PollMin (default:
// the repository's poll_seconds) right after a change and doubles while
// nothing changes, up to a.o.PollMax (or poll_seconds, if longer).
func (a *API) poll() {
	defer a.wg.Done()
	var p *poller
	for a.ctx.Err() == nil {
		var err error
		if p, err = a.newPoller(); err == nil {
			break
		}
		a.log.Error().Err(err).Msg("polling: cannot start")
		sleepCtx(a.ctx, pollRetry)
	}
	if p != nil {
		p.run(a.ctx)
	}
}

// poller is the polling state of one api process.
type poller struct {
	a       *API
	mirrors *gitrepo.Mirrors
	now     func() time.Time

	mu    sync.Mutex
	repos map[string]*polled
}

// polled is one polled repository.
type polled struct {
	repo     contracts.Repo
	head     string // the last head that triggered (or was found built); empty before the first check
	interval time.Duration
	due      time.Time
	failing  bool // the last check failed (logged once until it works again)
}

// newPoller makes the poller and its git directory (DATA_DIR/api/mirrors;
// ls-remote keeps no clones there, only git's HOME).
func (a *API) newPoller() (*poller, error) {
	protocols := gitrepo.DefaultProtocols
	if a.o.AllowLocal {
		protocols = append(append([]string(nil), protocols...), "file")
	}
	m, err := gitrepo.NewMirrors(filepath.Join(a.dir, "api", "mirrors"), gitrepo.WithProtocols(protocols...))
	if err != nil {
		return nil, err
	}
	return &poller{a: a, mirrors: m, now: time.Now, repos: map[string]*polled{}}, nil
}

// run polls until ctx ends.
func (p *poller) run(ctx context.Context) {
	var listed time.Time
	listEvery := pollListEvery
	if p.a.o.PollMin > 0 {
		listEvery = min(listEvery, p.a.o.PollMin)
	}
	for ctx.Err() == nil {
		if p.now().Sub(listed) >= listEvery {
			if err := p.refresh(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				p.a.log.Warn().Err(err).Msg("polling: listing repositories")
			} else {
				listed = p.now()
			}
		}
		p.checkDue(ctx)
		wait := listEvery - p.now().Sub(listed)
		if next, ok := p.nextDue(); ok {
			wait = min(wait, next.Sub(p.now()))
		}
		sleepCtx(ctx, max(wait, 10*time.Millisecond))
	}
}

// refresh reads the polled repositories from the data store: new ones
// are due at once, changed ones start over, removed ones are dropped.
func (p *poller) refresh(ctx context.Context) error {
	seen := map[string]contracts.Repo{}
	after := ""
	for {
		page, err := call[contracts.RepoList](ctx, p.a, contracts.ListRepos{Limit: contracts.MaxListLimit, After: after})
		if err != nil {
			return err
		}
		for _, r := range page.Repos {
			if r.Polled() {
				seen[r.Name] = r
			}
		}
		if page.Next == "" || len(page.Repos) == 0 {
			break
		}
		after = page.Next
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, st := range p.repos {
		r, ok := seen[name]
		if !ok || r.URL != st.repo.URL || r.DefaultBranch != st.repo.DefaultBranch || r.PollSeconds != st.repo.PollSeconds {
			delete(p.repos, name)
		}
	}
	for name, r := range seen {
		if _, ok := p.repos[name]; !ok {
			p.repos[name] = &polled{repo: r, interval: p.base(r), due: p.now()}
		}
	}
	return nil
}

// base is a repository's interval right after a change.
func (p *poller) base(r contracts.Repo) time.Duration {
	if p.a.o.PollMin > 0 {
		return p.a.o.PollMin
	}
	return time.Duration(r.PollSeconds) * time.Second
}

// ceiling is a repository's longest interval.
func (p *poller) ceiling(r contracts.Repo) time.Duration {
	return max(p.a.o.PollMax, p.base(r))
}

// nextDue is when the next repository is due.
func (p *poller) nextDue() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var next time.Time
	for _, st := range p.repos {
		if next.IsZero() || st.due.Before(next) {
			next = st.due
		}
	}
	return next, !next.IsZero()
}

// checkDue checks the repositories that are due, pollWorkers at a time.
func (p *poller) checkDue(ctx context.Context) {
	p.mu.Lock()
	now := p.now()
	var due []*polled
	for _, st := range p.repos {
		if !st.due.After(now) {
			due = append(due, st)
		}
	}
	p.mu.Unlock()
	sem := make(chan struct{}, pollWorkers)
	var wg sync.WaitGroup
	for _, st := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			p.check(ctx, st)
		}()
	}
	wg.Wait()
}

// check asks for one repository's head and triggers a build if it is new,
// then schedules the next check: the base interval after a change, twice
// the last one otherwise (a failure counts as no change).
func (p *poller) check(ctx context.Context, st *polled) {
	p.mu.Lock()
	r, last := st.repo, st.head
	p.mu.Unlock()
	head, err := p.checkRepo(ctx, r, last)
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil:
		if !st.failing {
			p.a.log.Warn().Err(err).Str("repo", r.Name).Msg("polling: checking the repository")
		}
		st.failing = true
		st.interval = nextInterval(st.interval, p.base(r), p.ceiling(r), false)
	case head != last:
		if st.failing {
			p.a.log.Info().Str("repo", r.Name).Msg("polling: the repository answers again")
		}
		st.failing = false
		st.head = head
		st.interval = nextInterval(st.interval, p.base(r), p.ceiling(r), true)
	default:
		st.failing = false
		st.interval = nextInterval(st.interval, p.base(r), p.ceiling(r), false)
	}
	st.due = p.now().Add(st.interval)
}

// nextInterval is the wait after a check: base after a change, otherwise
// twice the last wait (at least base), up to ceiling.
func nextInterval(last, base, ceiling time.Duration, changed bool) time.Duration {
	if changed {
		return base
	}
	return min(max(2*last, base), ceiling)
}

// checkRepo reads r's default branch's head and, if it is not last,
// triggers a push build of it (once per head across every api process,
// by the dedup key). It returns the head, which has triggered when it
// differs from last and err is nil.
func (p *poller) checkRepo(ctx context.Context, r contracts.Repo, last string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	head, err := p.mirrors.LsRemote(cctx, r.URL, r.DefaultBranch)
	cancel()
	if err != nil {
		return last, err // a missing branch too: nothing to build yet
	}
	if head == last {
		return head, nil
	}
	b, err := call[contracts.Build](ctx, p.a, contracts.TriggerBuild{
		Repo: r.Name, Ref: r.DefaultBranch, Commit: head, Event: contracts.TriggerPush,
		User: "poll", DedupKey: "poll:" + head,
	})
	if err != nil {
		return last, err
	}
	p.a.log.Info().Str("repo", r.Name).Str("commit", head).Int64("build", b.Number).Msg("polling: new commit")
	return head, nil
}
