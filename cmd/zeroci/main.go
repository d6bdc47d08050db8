// Command zeroci is the zeroci CI platform: one binary that runs the server
// (every module in one process, or any subset per process) and, in later
// issues, the local runner and the client commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	log := newLogger(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills at once.
	context.AfterFunc(ctx, stop)
	cmd, err := newRootCmd(log).ExecuteContextC(ctx)
	stop()
	os.Exit(report(os.Stderr, cmd, err))
}

// newLogger is the process's base logger: human-readable on a terminal,
// JSON lines otherwise. Modules get sub-loggers of it.
func newLogger(f *os.File) zerolog.Logger {
	if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
		return zerolog.New(zerolog.ConsoleWriter{Out: f, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	}
	return zerolog.New(f).With().Timestamp().Logger()
}
