package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/runtime"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

// Local is the modules that run builds (all but the api) in this process
// on an in-process transport, with no HTTP: the engine of `zeroci run`,
// the same code the server runs.
type Local struct {
	// TR is a client node on the modules' in-process network.
	TR transport.Transport

	node transport.Transport
	rt   *runtime.Runtime
}

// StartLocal starts every module but the api with cfg's options under
// cfg.DataDir, replacing those named in override; a nil module in override
// leaves that module out (benchmarks run without a scheduler or runner).
func StartLocal(ctx context.Context, cfg *config.Config, log zerolog.Logger, override map[string]modules.Module) (*Local, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("local: data dir: %w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("local: data dir: %w", err)
	}
	names := slices.DeleteFunc(modules.Names(), func(n string) bool { return n == modules.API })
	var mods []modules.Module
	for _, m := range build(cfg, names) {
		o, ok := override[m.Name()]
		switch {
		case !ok:
			mods = append(mods, m)
		case o != nil:
			mods = append(mods, o)
		}
	}
	net := inproc.NewNetwork()
	l := &Local{TR: net.Node(), node: net.Node()}
	l.rt = runtime.New(l.node, log, dataDir)
	if err := l.rt.Start(ctx, mods, ShutdownTimeout); err != nil {
		l.TR.Close()
		l.node.Close()
		return nil, err
	}
	return l, nil
}

// Stop stops the modules (running jobs are handed back or canceled within
// ctx) and closes the transport.
func (l *Local) Stop(ctx context.Context) error {
	err := l.rt.Stop(ctx)
	l.TR.Close()
	l.node.Close()
	return err
}
