package server

import (
	"fmt"
	"slices"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
	"github.com/zeroci/zeroci/transport/zmq"
)

// newTransport returns the process's transport and its kind for logs: one
// in-process network when the process runs every module, otherwise a ZeroMQ
// node wired by zmqConfig.
func newTransport(cfg *config.Config, key []byte, log zerolog.Logger) (transport.Transport, string, error) {
	if cfg.RunsAll() {
		if eps := cfg.Cluster.Endpoints.ByModule(); len(eps) > 0 {
			log.Warn().Msg("cluster.endpoints are not bound: this process runs every module, so they talk in-process")
		}
		return inproc.NewNetwork().Node(), "inproc", nil
	}
	n, err := zmq.New(zmqConfig(cfg, key, log))
	if err != nil {
		return nil, "", fmt.Errorf("server: transport: %w", err)
	}
	log.Info().Strs("bound", n.Endpoints()).Msg("zmq node up")
	return n, "zmq", nil
}

// checkEndpoints asks the ZeroMQ transport about every configured endpoint
// of a split process, so that one it would refuse (a URL escape, a control
// character: config.ParseEndpoint lets them through) is a configuration
// error naming where it was set, before anything starts.
func checkEndpoints(cfg *config.Config) error {
	if cfg.RunsAll() {
		return nil // endpoints are not used
	}
	eps := cfg.Cluster.Endpoints.ByModule()
	var ps []config.Problem
	for _, name := range modules.Names() {
		ep, ok := eps[name]
		if !ok {
			continue
		}
		if err := zmq.ValidateEndpoint(ep); err != nil {
			key := "cluster.endpoints." + name
			ps = append(ps, config.Problem{Origin: cfg.Origin(key), Key: key, Msg: err.Error()})
		}
	}
	if len(ps) > 0 {
		return &config.Error{Problems: ps}
	}
	return nil
}

// zmqConfig wires a split process: it binds (and brokers) the endpoints of
// the modules it runs; a request for service "<module>.<op>" goes to that
// module's endpoint, and services of modules without an endpoint (the
// replicated ones: jobs, api) are brokered by the event hub's endpoint,
// which also carries the pub/sub bus.
func zmqConfig(cfg *config.Config, key []byte, log zerolog.Logger) zmq.Config {
	eps := cfg.Cluster.Endpoints.ByModule()
	local := cfg.LocalModules()
	routes := map[string]string{"*": eps[modules.Eventhub]}
	var bind []string
	for _, name := range modules.Names() {
		ep, ok := eps[name]
		if !ok {
			continue
		}
		routes[name] = ep
		if slices.Contains(local, name) {
			bind = append(bind, ep)
		}
	}
	return zmq.Config{Key: key, Bind: bind, Routes: routes, Bus: eps[modules.Eventhub], Logger: log}
}
