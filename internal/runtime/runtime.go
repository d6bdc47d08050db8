// Package runtime runs zeroci modules on one transport: it starts them in
// order, registers each started module's health service, and stops them in
// reverse order. It knows modules only through the modules.Module contract;
// which modules exist is the caller's business.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/transport"
)

// ErrStopped is returned by Start after Stop.
var ErrStopped = errors.New("runtime: stopped")

// Runtime hosts modules in one process. Start and Stop may be called from
// different goroutines (a signal handler stops what a starter started);
// the methods are serialised.
type Runtime struct {
	tr      transport.Transport
	log     zerolog.Logger
	dataDir string

	mu      sync.Mutex // serialises Start and Stop; guards the fields below
	started []started  // in start order
	stopped bool
}

type started struct {
	mod    modules.Module
	health transport.Service
}

// New returns a runtime whose modules share tr, log (each module gets a
// sub-logger with a "module" field) and dataDir. It starts nothing.
func New(tr transport.Transport, log zerolog.Logger, dataDir string) *Runtime {
	return &Runtime{tr: tr, log: log, dataDir: dataDir}
}

// host is what one module sees of the runtime.
type host struct {
	tr      transport.Transport
	log     zerolog.Logger
	dataDir string
}

func (h host) Transport() transport.Transport { return h.tr }
func (h host) Logger() zerolog.Logger         { return h.log }
func (h host) DataDir() string                { return h.dataDir }

// Start starts mods in the given order. After a module's Start returns, its
// health service (modules.HealthService) answers on the transport. If a
// module fails to start, or ctx ends, the modules already started are
// stopped in reverse order (bounded by stopTimeout) and the error is
// returned.
func (r *Runtime) Start(ctx context.Context, mods []modules.Module, stopTimeout time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return ErrStopped
	}
	for _, m := range mods {
		if err := ctx.Err(); err != nil {
			r.rollbackLocked(stopTimeout)
			return fmt.Errorf("runtime: start: %w", err)
		}
		if err := r.startLocked(ctx, m); err != nil {
			r.rollbackLocked(stopTimeout)
			return err
		}
	}
	return nil
}

func (r *Runtime) startLocked(ctx context.Context, m modules.Module) error {
	name := m.Name()
	log := r.log.With().Str("module", name).Logger()
	t0 := time.Now()
	if err := m.Start(ctx, host{tr: r.tr, log: log, dataDir: r.dataDir}); err != nil {
		return fmt.Errorf("runtime: start %s: %w", name, err)
	}
	reply := []byte(`{"module":"` + name + `","status":"ok"}`)
	svc, err := r.tr.Serve(modules.HealthService(name), func(context.Context, []byte) ([]byte, error) {
		return reply, nil
	})
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if serr := m.Stop(stopCtx); serr != nil {
			log.Error().Err(serr).Msg("stop after failed start")
		}
		return fmt.Errorf("runtime: start %s: health service: %w", name, err)
	}
	r.started = append(r.started, started{mod: m, health: svc})
	log.Info().Dur("took", time.Since(t0)).Msg("module started")
	return nil
}

func (r *Runtime) rollbackLocked(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := r.stopLocked(ctx); err != nil {
		r.log.Error().Err(err).Msg("stopping modules after a failed start")
	}
}

// Stop stops the started modules in reverse start order: first it closes a
// module's health service (readiness fails at once), then calls its Stop
// with ctx. Every module is stopped even when one fails or ctx has ended;
// the errors are joined. Later calls, and Start after Stop, do nothing.
func (r *Runtime) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	return r.stopLocked(ctx)
}

func (r *Runtime) stopLocked(ctx context.Context) error {
	var errs []error
	for i := len(r.started) - 1; i >= 0; i-- {
		s := r.started[i]
		name := s.mod.Name()
		log := r.log.With().Str("module", name).Logger()
		if err := s.health.Close(); err != nil {
			errs = append(errs, fmt.Errorf("runtime: stop %s: health service: %w", name, err))
		}
		t0 := time.Now()
		if err := s.mod.Stop(ctx); err != nil {
			log.Error().Err(err).Msg("module stop failed")
			errs = append(errs, fmt.Errorf("runtime: stop %s: %w", name, err))
			continue
		}
		log.Info().Dur("took", time.Since(t0)).Msg("module stopped")
	}
	r.started = nil
	return errors.Join(errs...)
}

// Probe asks the health service of each module in names, concurrently,
// each request bounded by timeout, and returns the modules that did not
// answer with their errors (empty when all are healthy). It returns when
// every request has.
func Probe(ctx context.Context, rq transport.Requester, names []string, timeout time.Duration) map[string]error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			_, errs[i] = rq.Request(ctx, modules.HealthService(name), nil)
		}()
	}
	wg.Wait()
	failed := make(map[string]error)
	for i, err := range errs {
		if err != nil {
			failed[names[i]] = err
		}
	}
	return failed
}
