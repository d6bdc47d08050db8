// Package api is the HTTP module: the JSON API of SPEC.md §5 with bearer
// tokens, server-sent events for logs and events, push webhooks, polling
// of repositories without webhooks, and the web UI.
//
// The api holds no state another replica would miss: every request is
// answered from the other modules over the transport (the data store, the
// logging module, the blob store, the event hub), so several api processes
// can serve one deployment behind a load balancer. Webhook deliveries and
// polled commits trigger builds with a dedup key the data store keeps, so
// a delivery replayed to another replica, or a commit seen by two pollers,
// triggers once.
//
// The process owns the HTTP listener (internal/server); it mounts Handler
// at "/" and adds Collectors to /metrics when the api runs in it.
package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Summary says in one line what the module does, for --help.
const Summary = "HTTP API, webhooks and web UI"

// Limits and timings.
const (
	// MaxBody bounds a request body (SPEC.md §5: larger is 413).
	MaxBody = 1 << 20
	// KeepAlive is how often an idle event stream gets a comment line.
	KeepAlive = 15 * time.Second
	// requestTimeout bounds one request to another module.
	requestTimeout = 10 * time.Second
	// tokenCacheTTL is how long a checked token is trusted without asking
	// the data store again.
	tokenCacheTTL = 10 * time.Second
	// AdminTokenFile is where the first start writes the admin token,
	// under the data directory.
	AdminTokenFile = "admin.token"
)

// Options configure the api module.
type Options struct {
	// KeepAlive overrides KeepAlive (tests).
	KeepAlive time.Duration
	// PollMin and PollMax bound the polling interval of repositories
	// without webhooks (defaults: the repository's poll_seconds, and an
	// hour).
	PollMin, PollMax time.Duration
	// NoPoll turns polling off in this process.
	NoPoll bool
	// AllowLocal lets polled repository URLs be local paths or file://
	// URLs (config buildscript.allow_local).
	AllowLocal bool
}

// API is the api module.
type API struct {
	o        Options
	log      zerolog.Logger
	tr       transport.Transport
	dir      string
	mux      *http.ServeMux
	patterns []string

	ctx    context.Context // the module's life
	cancel context.CancelFunc
	wg     sync.WaitGroup

	tokMu  sync.Mutex
	tokens map[string]cachedToken // by hash

	metrics *metrics
}

type cachedToken struct {
	hash    string
	tok     contracts.Token
	expires time.Time
}

// New returns the module, constructed without side effects.
func New(o Options) *API {
	if o.KeepAlive <= 0 {
		o.KeepAlive = KeepAlive
	}
	if o.PollMax <= 0 {
		o.PollMax = time.Hour
	}
	a := &API{o: o, tokens: map[string]cachedToken{}, metrics: newMetrics()}
	a.mux = http.NewServeMux()
	a.routes()
	return a
}

// Name implements modules.Module.
func (a *API) Name() string { return modules.API }

// Start makes sure an admin token exists and starts the background work
// (metrics from the event stream, polling).
func (a *API) Start(ctx context.Context, host modules.Host) error {
	a.log = host.Logger()
	a.tr = host.Transport()
	a.dir = host.DataDir()
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if err := a.ensureAdminToken(ctx); err != nil {
		a.cancel()
		return err
	}
	a.wg.Add(1)
	go a.followEvents()
	if !a.o.NoPoll {
		a.wg.Add(1)
		go a.poll()
	}
	return nil
}

// Stop ends event streams and background work.
func (a *API) Stop(ctx context.Context) error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("api: stop: %w", ctx.Err())
	}
}

// Handler serves the API, the webhooks and the web UI. Requests before
// Start get 503.
func (a *API) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.tr == nil || a.ctx.Err() != nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the api is starting or stopping")
			return
		}
		a.mux.ServeHTTP(w, r)
	})
}

// ensureAdminToken creates the admin token on first start and writes it
// to DATA_DIR/admin.token (0600). It waits for the data store, which may
// start later in a split deployment.
func (a *API) ensureAdminToken(ctx context.Context) error {
	path := filepath.Join(a.dir, AdminTokenFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tok, err := NewToken()
	if err != nil {
		return err
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		_, err = rpc.Call[contracts.Token](cctx, a.tr, contracts.CreateToken{Name: "admin", Scope: contracts.ScopeAdmin, Hash: contracts.TokenHash(tok)})
		cancel()
		if err == nil || contracts.CodeOf(err) != contracts.CodeUnavailable || ctx.Err() != nil {
			break
		}
	}
	switch {
	case contracts.CodeOf(err) == contracts.CodeConflict:
		a.log.Warn().Str("file", path).Msg("an admin token exists already (made by another api process); this one writes none")
		return nil
	case err != nil:
		return fmt.Errorf("api: creating the admin token: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("api: admin token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("api: admin token: %w", err)
	}
	a.log.Info().Str("file", path).Msg("admin token created")
	return nil
}

// NewToken makes a new random API token.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("api: token: %w", err)
	}
	return "zci_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// call sends a request to another module with the API's deadline.
func call[R any, PR interface {
	*R
	contracts.Message
}](ctx context.Context, a *API, req contracts.Message) (R, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return rpc.Call[R, PR](ctx, a.tr, req)
}

var errNoToken = errors.New("no token")
