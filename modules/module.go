// Package modules is the contract between zeroci's seven modules and the
// process that hosts them: the Module lifecycle, the Host a module reaches
// the rest of the platform through, the module names in start order and the
// service naming convention on the transport.
//
// A module lives in its own package modules/<name>. It may import this
// package, transport and contracts; it never imports another module's
// package. Modules reach each other only through the transport, so the same
// module code runs with every module in one process or one per process.
package modules

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/transport"
)

// Module names, as users write them in --modules and the config file.
const (
	Eventhub    = "eventhub"
	Datastore   = "datastore"
	Blob        = "blob"
	Logging     = "logging"
	Buildscript = "buildscript"
	Jobs        = "jobs"
	API         = "api"
)

// Names returns the seven module names in start order; modules stop in the
// reverse order. A module starts after the modules it needs: the event hub
// first, the HTTP API last. The result is a fresh slice.
func Names() []string {
	return []string{Eventhub, Datastore, Blob, Logging, Buildscript, Jobs, API}
}

// Known reports whether name is one of the seven module names.
func Known(name string) bool {
	for _, n := range Names() {
		if n == name {
			return true
		}
	}
	return false
}

// Replicated reports whether several processes may run the module at once
// (SPEC.md §3: runners scale out, the API sits behind a load balancer). Every
// other module runs in exactly one process of a deployment, and the others
// reach it at its cluster endpoint.
func Replicated(name string) bool {
	return name == Jobs || name == API
}

// Service returns the transport service name of op on module:
// "<module>.<op>". The part before the first dot names the module that
// serves it, which is how a split deployment's transport routes a request
// to the process running that module (see internal/server).
func Service(module, op string) string { return module + "." + op }

// HealthOp is the operation the host registers for every started module;
// it answers as soon as the module has started (see HealthService).
const HealthOp = "health"

// HealthService returns the name of module's health service.
func HealthService(module string) string { return Service(module, HealthOp) }

// Module is one of zeroci's seven parts.
//
// Lifecycle: a module is constructed without side effects (no goroutines, no
// files, no sockets); Start is called once, in start order, and may register
// services and subscriptions on the host's transport; Stop is called once,
// in reverse order, after a successful Start. The host calls Start and Stop
// from one goroutine; a module's own goroutines are the module's to stop.
type Module interface {
	// Name returns the module's name (one of Names).
	Name() string
	// Start brings the module up. It returns once the module can serve;
	// ctx bounds start-up only, not the module's life.
	Start(ctx context.Context, host Host) error
	// Stop stops taking work, finishes or hands back what is running and
	// releases everything Start acquired, giving up when ctx ends.
	Stop(ctx context.Context) error
}

// Host is what a module gets from the process that runs it. Safe for
// concurrent use.
type Host interface {
	// Transport is the bus to the other modules, in this process or not.
	Transport() transport.Transport
	// Logger is the module's logger, with a "module" field set.
	Logger() zerolog.Logger
	// DataDir is the process's data directory; a module keeps its files
	// under a subdirectory named after itself.
	DataDir() string
}
