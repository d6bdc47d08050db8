// Package server assembles one zeroci process (`zeroci server`): it checks
// the configuration and cluster key, creates the data directory, picks the
// transport (in-process when the process runs every module, ZeroMQ
// otherwise), serves /healthz and /readyz over HTTP, and runs the modules
// with package runtime until told to stop.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/runtime"
	"github.com/zeroci/zeroci/transport"
)

// Timeouts.
const (
	// ShutdownTimeout bounds a graceful stop: modules, transport, HTTP.
	ShutdownTimeout = 30 * time.Second
	// ProbeTimeout bounds each module's answer to a readiness probe.
	ProbeTimeout = time.Second
)

// Server is one running zeroci process. Its methods are safe for
// concurrent use.
type Server struct {
	log  zerolog.Logger
	deps []string // modules /readyz asks, in start order
	tr   transport.Transport
	rt   *runtime.Runtime
	ln   net.Listener
	http *http.Server

	app     atomic.Pointer[http.Handler] // the api module's handler, when it runs here
	metrics *prometheus.Registry

	serveErr  chan error    // the HTTP server's failure, if it fails on its own
	serveDone chan struct{} // closed when the HTTP serving goroutine returns

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start validates cfg and brings the process up: data directory, HTTP
// listener (/healthz answers from here on), transport, then the modules in
// start order. On failure everything already acquired is released.
// Configuration problems match config.ErrInvalid. ctx bounds start-up.
func Start(ctx context.Context, cfg *config.Config, log zerolog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkEndpoints(cfg); err != nil {
		return nil, err
	}
	key, err := cfg.ClusterKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}

	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("server: http: %w", err)
	}
	cleanup = append(cleanup, func() { ln.Close() })

	tr, kind, err := newTransport(cfg, key, log.With().Str("component", "transport").Logger())
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { tr.Close() })

	s := &Server{
		log:       log.With().Str("component", "server").Logger(),
		deps:      cfg.Dependencies(),
		tr:        tr,
		rt:        runtime.New(tr, log, dataDir),
		metrics:   newRegistry(tr),
		ln:        ln,
		serveErr:  make(chan error, 1),
		serveDone: make(chan struct{}),
	}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          stdlog.New(s.log, "", 0),
	}
	go s.serve()
	cleanup = append(cleanup, func() {
		s.http.Close()
		<-s.serveDone
	})
	s.log.Info().Str("addr", ln.Addr().String()).Msg("http listening")

	local := cfg.LocalModules()
	mods := build(cfg, local)
	for _, m := range mods {
		if h, ok := m.(interface{ Handler() http.Handler }); ok {
			handler := h.Handler()
			s.app.Store(&handler)
		}
		if c, ok := m.(interface{ Collectors() []prometheus.Collector }); ok {
			s.metrics.MustRegister(c.Collectors()...)
		}
	}
	if err := s.rt.Start(ctx, mods, ShutdownTimeout); err != nil {
		return nil, err
	}
	s.log.Info().Strs("modules", local).Str("transport", kind).Str("data_dir", dataDir).
		Str("http", ln.Addr().String()).Msg("zeroci server started")
	return s, nil
}

// serve runs the HTTP server; it is owned by the Server and waited for by
// Shutdown.
func (s *Server) serve() {
	defer close(s.serveDone)
	if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		s.serveErr <- fmt.Errorf("server: http: %w", err)
	}
}

// HTTPAddr returns the address the HTTP listener is bound to.
func (s *Server) HTTPAddr() net.Addr { return s.ln.Addr() }

// Failed delivers an error if the HTTP server stops on its own.
func (s *Server) Failed() <-chan error { return s.serveErr }

// Shutdown stops the modules in reverse start order, closes the transport,
// then shuts the HTTP server down, all bounded by ctx. Idempotent: later
// calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		t0 := time.Now()
		errs := []error{s.rt.Stop(ctx)}
		if err := s.tr.Close(); err != nil {
			errs = append(errs, fmt.Errorf("server: transport: %w", err))
		}
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: http: %w", err))
			s.http.Close()
		}
		<-s.serveDone
		s.shutdownErr = errors.Join(errs...)
		s.log.Info().Dur("took", time.Since(t0)).Err(s.shutdownErr).Msg("zeroci server stopped")
	})
	return s.shutdownErr
}

// Run starts the server and runs it until ctx ends (SIGINT/SIGTERM), then
// shuts it down within ShutdownTimeout. It returns nil after a clean stop,
// also when ctx ends during start-up.
func Run(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	s, err := Start(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			log.Info().Msg("stopped during start-up")
			return nil
		}
		return err
	}
	var failed error
	select {
	case <-ctx.Done():
		s.log.Info().Msg("shutting down")
	case failed = <-s.Failed():
		s.log.Error().Err(failed).Msg("shutting down after a failure")
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	return errors.Join(failed, s.Shutdown(sctx))
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{ErrorLog: stdlog.New(s.log, "", 0)}))
	// The process's own paths take only GET, whatever the api serves at /.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": r.Method + " " + path + ": only GET", "code": "method_not_allowed"})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if h := s.app.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this process does not run the api module", "code": "not_found"})
	})
	return mux
}

// readyzBody is /readyz's answer.
type readyzBody struct {
	Status  string            `json:"status"`
	Error   string            `json:"error,omitempty"`
	Code    string            `json:"code,omitempty"`
	Modules map[string]string `json:"modules,omitempty"` // failed module -> why
}

// readyz asks the health service of every module this process depends on.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	failed := runtime.Probe(r.Context(), s.tr, s.deps, ProbeTimeout)
	if len(failed) == 0 {
		writeJSON(w, http.StatusOK, readyzBody{Status: "ready"})
		return
	}
	body := readyzBody{Status: "not_ready", Code: "not_ready", Modules: make(map[string]string)}
	var names []string
	for _, name := range s.deps { // start order
		if err, ok := failed[name]; ok {
			names = append(names, name)
			body.Modules[name] = err.Error()
		}
	}
	body.Error = "modules not ready: " + strings.Join(names, ", ")
	writeJSON(w, http.StatusServiceUnavailable, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
