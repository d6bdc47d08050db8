package dsbench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pgtest"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/datastore/store"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runTimeout bounds one measured run.
const runTimeout = 2 * time.Minute

// repoCount is how many repositories the fixture creates; the spread case
// uses all of them.
const repoCount = 16

// driver is a data store backend.
type driver struct {
	name string
	opts func(tb testing.TB) datastore.Options // skips tb if unavailable
}

func drivers() []driver {
	return []driver{
		{"sqlite", func(testing.TB) datastore.Options { return datastore.Options{Driver: store.DriverSQLite} }},
		{"postgres", func(tb testing.TB) datastore.Options {
			return datastore.Options{Driver: store.DriverPostgres, DSN: pgtest.Schema(tb)}
		}},
	}
}

// fixture is a hub (file log) and a data store on one in-process network,
// a client node, and repoCount repositories.
type fixture struct {
	client transport.Transport
	repos  []string
}

func newFixture(tb testing.TB, d driver) *fixture {
	tb.Helper()
	opts := d.opts(tb)
	net := inproc.NewNetwork()
	tr, client := net.Node(), net.Node()
	tb.Cleanup(func() { client.Close(); tr.Close() })
	host := moduletest.Host{TR: tr, Log: moduletest.Logger(tb), Dir: tb.TempDir()}
	hub := eventhub.New(eventhub.Options{OpenLog: func(_ context.Context, dataDir string) (eventlog.Log, error) {
		l, err := filelog.Open(filepath.Join(dataDir, "events"), filelog.Options{})
		if err != nil {
			return nil, err
		}
		return l, nil
	}})
	moduletest.Start(tb, hub, host)
	moduletest.Start(tb, datastore.New(opts), host)
	f := &fixture{client: client}
	ctx := runContext(tb)
	for i := range repoCount {
		name := fmt.Sprintf("repo-%02d", i)
		if _, err := rpc.Call[contracts.Repo](ctx, client, contracts.CreateRepo{Name: name, URL: "https://git.example.com/" + name + ".git"}); err != nil {
			tb.Fatalf("create repo %s: %v", name, err)
		}
		f.repos = append(f.repos, name)
	}
	return f
}

func runContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// timer is the part of *testing.B a measurement drives.
type timer interface {
	ResetTimer()
	StopTimer()
}

type noTimer struct{}

func (noTimer) ResetTimer() {}
func (noTimer) StopTimer()  {}

// triggerRun has clients goroutines send n datastore.trigger_build
// commands in all, command i to repos[i%len(repos)], each waiting for its
// reply, and returns how long that took. Every reply must be a build of
// the repository asked; seen, if not nil, gets each one (from several
// goroutines). It stops at the first error, which it returns.
func triggerRun(ctx context.Context, tm timer, client transport.Transport, n, clients int, repos []string, seen func(contracts.Build)) (time.Duration, error) {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(clients)
	tm.ResetTimer()
	start := time.Now()
	for i := range n {
		g.Go(func() error {
			repo := repos[i%len(repos)]
			b, err := rpc.Call[contracts.Build](ctx, client, contracts.TriggerBuild{
				Repo:   repo,
				Ref:    "main",
				Commit: "3f9c2a1d8e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a",
				Params: map[string]string{"DEPLOY_ENV": "staging"},
				Event:  contracts.TriggerPush,
				User:   "alice",
			})
			if err != nil {
				return fmt.Errorf("trigger %d of %d on %s: %w", i+1, n, repo, err)
			}
			if b.Repo != repo || b.Number < 1 {
				return fmt.Errorf("trigger on %s answered build %d of %q", repo, b.Number, b.Repo)
			}
			if seen != nil {
				seen(b)
			}
			return nil
		})
	}
	err := g.Wait()
	elapsed := time.Since(start)
	tm.StopTimer()
	return elapsed, err
}

// BenchmarkTriggerBuild: C clients trigger builds, spread over 16
// repositories or all on one; commands/s counts answered triggers.
func BenchmarkTriggerBuild(b *testing.B) {
	for _, d := range drivers() {
		b.Run(d.name, func(b *testing.B) {
			f := newFixture(b, d)
			for _, spread := range []int{repoCount, 1} {
				for _, clients := range []int{1, 16, 64} {
					b.Run(fmt.Sprintf("repos=%d/C=%d", spread, clients), func(b *testing.B) {
						elapsed, err := triggerRun(runContext(b), b, f.client, b.N, clients, f.repos[:spread], nil)
						if err != nil {
							b.Fatal(err)
						}
						b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commands/s")
					})
				}
			}
		})
	}
}

// The benchmark runs only with -bench. This test runs its fixture on a
// few concurrent triggers: every repository must number its builds 1, 2,
// 3... with no gap and no duplicate.
func TestTriggerFixture(t *testing.T) {
	for _, d := range drivers() {
		t.Run(d.name, func(t *testing.T) {
			f := newFixture(t, d)
			const perRepo, repos = 10, 4
			var (
				mu      sync.Mutex
				numbers = make(map[string][]int64)
			)
			_, err := triggerRun(runContext(t), noTimer{}, f.client, perRepo*repos, 8, f.repos[:repos], func(b contracts.Build) {
				mu.Lock()
				defer mu.Unlock()
				numbers[b.Repo] = append(numbers[b.Repo], b.Number)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(numbers) != repos {
				t.Fatalf("builds in %d repos, want %d: %v", len(numbers), repos, numbers)
			}
			for repo, got := range numbers {
				slices.Sort(got)
				for i, n := range got {
					if n != int64(i+1) || len(got) != perRepo {
						t.Fatalf("%s numbered its builds %v, want 1..%d", repo, got, perRepo)
					}
				}
			}
		})
	}
}
