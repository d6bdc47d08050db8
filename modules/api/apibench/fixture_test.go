package apibench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/api"
	"github.com/zeroci/zeroci/modules/moduletest"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// repoName is the repository every benchmark reads or builds.
const repoName = "bench"

// runTimeout bounds one benchmark (its setup included) or test.
const runTimeout = 5 * time.Minute

// runContext returns a context that ends after runTimeout or with tb.
func runContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// logger is the modules' logger: errors only, to the test's log (a
// scheduler-less api warns about what it misses).
func logger(tb testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.ErrorLevel).With().Timestamp().Logger()
}

// stack is a running zeroci with its HTTP API: tr is a client node on the
// modules' in-process network (the baselines' way in), base the API's
// http://127.0.0.1:PORT, admin the admin token, client an HTTP client
// that keeps enough idle connections for the open-loop runs.
type stack struct {
	tr     transport.Transport
	base   string
	admin  string
	client *http.Client
}

// startStack starts every module but the api with server.StartLocal (the
// scheduler and the runner left out unless builds should run), the api module on the engine's client node, and an HTTP server on
// a loopback port serving the api's Handler. Everything stops when tb
// ends.
func startStack(tb testing.TB, runBuilds bool) *stack {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := filepath.Abs(filepath.Join(tb.TempDir(), "data"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Buildscript.AllowLocal = true
	override := map[string]modules.Module{}
	if !runBuilds {
		override[modules.Buildscript] = nil // builds stay queued
		override[modules.Jobs] = nil
	}
	log := logger(tb)
	local, err := server.StartLocal(ctx, cfg, log, override)
	if err != nil {
		tb.Fatalf("start local: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), server.ShutdownTimeout)
		defer cancel()
		if err := local.Stop(ctx); err != nil {
			tb.Errorf("stop local: %v", err)
		}
	})
	a := api.New(api.Options{NoPoll: true, AllowLocal: true})
	moduletest.Start(tb, a, moduletest.Host{TR: local.TR, Log: log, Dir: dir})
	tok, err := os.ReadFile(filepath.Join(dir, api.AdminTokenFile))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ht := &http.Transport{MaxIdleConns: 2048, MaxIdleConnsPerHost: 2048, IdleConnTimeout: time.Minute}
	tb.Cleanup(func() {
		ht.CloseIdleConnections()
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("http server: %v", err)
		}
	})
	return &stack{
		tr:     local.TR,
		base:   "http://" + ln.Addr().String(),
		admin:  strings.TrimSpace(string(tok)),
		client: &http.Client{Transport: ht},
	}
}

// get sends GET path with the admin token and extra headers.
func (s *stack) get(ctx context.Context, path string, header ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.admin)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.client.Do(req)
}

// gitRepo creates a git repository whose branch main holds pipeline as
// .zeroci/pipeline.yaml, and returns its path.
func gitRepo(tb testing.TB, pipeline string) string { return gittest.PipelineRepo(tb, pipeline) }

// createRepo registers the repository at src as name.
func createRepo(ctx context.Context, tr transport.Requester, name, src string) error {
	_, err := rpc.Call[contracts.Repo](ctx, tr, contracts.CreateRepo{Name: name, URL: src, DefaultBranch: "main"})
	if err != nil {
		return fmt.Errorf("create repo %s: %w", name, err)
	}
	return nil
}

// trigger triggers a build of repo's main branch and returns its number.
func trigger(ctx context.Context, tr transport.Requester, repo string) (int64, error) {
	b, err := rpc.Call[contracts.Build](ctx, tr, contracts.TriggerBuild{Repo: repo, Ref: "main", Event: contracts.TriggerManual, User: "bench"})
	if err != nil {
		return 0, fmt.Errorf("trigger %s: %w", repo, err)
	}
	return b.Number, nil
}

// fillBuilds triggers n builds of repo with conc concurrent
// datastore.trigger_build requests and checks that they got the numbers 1
// to n, each once.
func fillBuilds(ctx context.Context, tr transport.Requester, repo string, n, conc int) error {
	seen := make([]atomic.Bool, n+1)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				num, err := trigger(ctx, tr, repo)
				if err == nil && (num < 1 || num > int64(n) || seen[num].Swap(true)) {
					err = fmt.Errorf("trigger %s: build number %d twice or out of 1..%d", repo, num, n)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when none failed
}
