package config

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zeroci/zeroci/modules"
)

// LocalModules returns the modules this process runs, in start order
// ("all" expands to every module; unknown names are left out: Validate
// reports them).
func (c *Config) LocalModules() []string {
	var out []string
	for _, name := range modules.Names() {
		if slices.Contains(c.Modules, All) || slices.Contains(c.Modules, name) {
			out = append(out, name)
		}
	}
	return out
}

// RunsAll reports whether this process runs every module, in which case
// they share an in-process transport and cluster endpoints are not used.
func (c *Config) RunsAll() bool {
	return len(c.LocalModules()) == len(modules.Names())
}

// Dependencies returns the modules whose health this process's readiness
// depends on, in start order: the ones it runs, and in a split deployment
// every module that runs once per deployment (reached at its endpoint).
func (c *Config) Dependencies() []string {
	local := c.LocalModules()
	var out []string
	for _, name := range modules.Names() {
		if slices.Contains(local, name) || !modules.Replicated(name) {
			out = append(out, name)
		}
	}
	return out
}

// Validate checks the whole configuration and returns an *Error (matching
// ErrInvalid) listing every problem, or nil.
func (c *Config) Validate() error {
	ps := &problems{c: c}
	c.validateModules(ps)
	if len(ps.list) == 0 {
		// Which endpoints are required depends on the module list: with a
		// bad list, its error is the one worth reading.
		c.validateEndpoints(ps)
	}

	if strings.TrimSpace(c.DataDir) == "" {
		ps.add("data_dir", "must not be empty")
	}

	switch c.Eventhub.Backend {
	case EventsFiles:
		if c.Eventhub.DSN != "" {
			ps.add("eventhub.dsn", "applies only to backend %s, and backend is %s", EventsPostgres, EventsFiles)
		}
	case EventsPostgres:
		if c.Eventhub.DSN == "" {
			ps.add("eventhub.dsn", "required for backend postgres (postgres://USER@HOST/DB?sslmode=...)")
		}
	default:
		ps.add("eventhub.backend", "%q is not a backend (want %s or %s)", c.Eventhub.Backend, EventsFiles, EventsPostgres)
	}
	if r := c.Eventhub.Retention; r != "" {
		if d, err := time.ParseDuration(r); err != nil || d < time.Hour {
			ps.add("eventhub.retention", "%q: want a duration of at least 1h, such as 720h", r)
		}
	}

	switch c.Datastore.Driver {
	case DriverSQLite:
	case DriverPostgres:
		if c.Datastore.DSN == "" {
			ps.add("datastore.dsn", "required for driver postgres (postgres://USER@HOST/DB?sslmode=...)")
		}
	default:
		ps.add("datastore.driver", "%q is not a driver (want %s or %s)", c.Datastore.Driver, DriverSQLite, DriverPostgres)
	}

	b := c.Blob
	switch b.Backend {
	case BackendFS:
		for _, kv := range [][2]string{{"namespace", b.Namespace}, {"bucket", b.Bucket}, {"region", b.Region},
			{"auth", b.Auth}, {"config_file", b.ConfigFile}, {"profile", b.Profile}} {
			if kv[1] != "" {
				ps.add("blob."+kv[0], "applies only to backend %s, and backend is %s", BackendOCI, BackendFS)
			}
		}
	case BackendOCI:
		if b.Namespace == "" {
			ps.add("blob.namespace", "required for backend oci")
		}
		if b.Bucket == "" {
			ps.add("blob.bucket", "required for backend oci")
		}
		switch b.Auth {
		case AuthInstancePrincipal, AuthResourcePrincipal:
			if b.ConfigFile != "" || b.Profile != "" {
				ps.add("blob.auth", "config_file and profile apply only to auth %s", AuthConfigFile)
			}
		case AuthConfigFile:
		case "":
			ps.add("blob.auth", "required for backend oci (want %s, %s or %s)", AuthInstancePrincipal, AuthResourcePrincipal, AuthConfigFile)
		default:
			ps.add("blob.auth", "%q is not an auth method (want %s, %s or %s)", b.Auth, AuthInstancePrincipal, AuthResourcePrincipal, AuthConfigFile)
		}
	default:
		ps.add("blob.backend", "%q is not a backend (want %s or %s)", b.Backend, BackendFS, BackendOCI)
	}

	if c.Logging.MaxJobBytes < 1<<10 {
		ps.add("logging.max_job_bytes", "must be at least 1024, is %d", c.Logging.MaxJobBytes)
	}

	if msg := checkListenAddr(c.HTTP.Addr); msg != "" {
		ps.add("http.addr", "%s", msg)
	}

	for key, v := range map[string]string{"buildscript.lease_timeout": c.Buildscript.LeaseTimeout, "jobs.stop_timeout": c.Jobs.StopTimeout,
		"api.keep_alive": c.API.KeepAlive, "api.poll_max": c.API.PollMax} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || d < time.Second {
			ps.add(key, "%q: want a duration of at least 1s, such as 30s", v)
		}
	}

	if c.Jobs.Capacity < 1 {
		ps.add("jobs.capacity", "must be at least 1, is %d", c.Jobs.Capacity)
	}
	switch c.Jobs.Executor {
	case ExecutorShell, ExecutorContainer:
	default:
		ps.add("jobs.executor", "%q is not an executor (want %s or %s)", c.Jobs.Executor, ExecutorShell, ExecutorContainer)
	}
	for _, k := range sortedKeys(c.Jobs.Labels) {
		if k == "" || strings.ContainsAny(k, "=, \t\n") {
			ps.add("jobs.labels", "label %q: a label name must be non-empty, without spaces, '=' or ','", k)
		}
	}
	return ps.err()
}

func (c *Config) validateModules(ps *problems) {
	if len(c.Modules) == 0 {
		ps.add("modules", "empty: list module names or %q", All)
		return
	}
	seen := make(map[string]bool)
	for _, name := range c.Modules {
		switch {
		case name == All:
			if len(c.Modules) > 1 {
				ps.add("modules", "%q cannot be combined with other names", All)
			}
		case !modules.Known(name):
			ps.add("modules", "unknown module %q (known: %s, or %s)", name, strings.Join(modules.Names(), ", "), All)
		case seen[name]:
			ps.add("modules", "%q listed twice", name)
		}
		seen[name] = true
	}
}

func (c *Config) validateEndpoints(ps *problems) {
	split := !c.RunsAll()
	local := c.LocalModules()
	byModule := c.Cluster.Endpoints.ByModule()
	usedBy := make(map[string]string) // normalised endpoint -> module
	for _, name := range modules.Names() {
		key := "cluster.endpoints." + name
		raw, set := byModule[name]
		runsHere := slices.Contains(local, name)
		if !set {
			if split && !modules.Replicated(name) {
				if runsHere {
					ps.add(key, "required: this process runs %s in a split deployment, and the other processes reach it there", name)
				} else {
					ps.add(key, "required: this process does not run %s, so it must know where to reach it", name)
				}
			}
			continue
		}
		e, err := ParseEndpoint(raw)
		if err != nil {
			ps.add(key, "%v", err)
			continue
		}
		if modules.Replicated(name) {
			ps.add(key, "not allowed: several processes may run %s, so it has no single endpoint (its replicas reach the others at theirs)", name)
			continue
		}
		if split && !runsHere && e.Scheme == SchemeInproc {
			ps.add(key, "%s is reachable only inside the process that binds it, and %s runs in another process", raw, name)
		}
		norm := e.Scheme + "://" + e.Path
		if e.Scheme == SchemeTCP {
			host := strings.ToLower(e.Host)
			if host == "localhost" {
				host = "127.0.0.1"
			}
			norm = e.Scheme + "://" + net.JoinHostPort(host, strconv.Itoa(e.Port))
		}
		if other, dup := usedBy[norm]; dup {
			ps.add(key, "%s is also the endpoint of %s; each module needs its own", raw, other)
			continue
		}
		usedBy[norm] = name
	}
}

// checkListenAddr checks a HOST:PORT listen address (port 0 picks a free
// port) and returns what is wrong with it, or "".
func checkListenAddr(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return strconv.Quote(addr) + " is not HOST:PORT (e.g. 127.0.0.1:8080 or :8080)"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return strconv.Quote(addr) + ": port must be a number from 0 to 65535"
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
