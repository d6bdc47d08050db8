// Package config is the server's configuration (SPEC.md §3): defaults, a
// strictly decoded YAML file, ZEROCI_<SECTION>_<KEY> environment overrides,
// command-line overrides, and Validate.
//
// Precedence, lowest first: Default, the file (Load), the environment
// (ApplyEnv), flags (Set with the flag as origin). Every problem names the
// key and where its value came from ("zeroci.yaml:7", "$ZEROCI_HTTP_ADDR",
// "--modules"), so a user knows what to fix.
//
// A Config is a plain value: not safe for concurrent mutation, safe for
// concurrent reads once built.
package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalid is wrapped by every error about what the user wrote (a bad
// file, key, value or combination). Callers exit with status 2 on it.
var ErrInvalid = errors.New("config: invalid")

// Config is the whole configuration of one zeroci process.
type Config struct {
	// Modules this process runs: module names, or "all" (the default).
	Modules []string `yaml:"modules"`
	// Cluster wires the processes of a split deployment together.
	Cluster Cluster `yaml:"cluster"`
	// DataDir holds the process's files (database, blobs, keys).
	DataDir   string    `yaml:"data_dir"`
	Eventhub  Eventhub  `yaml:"eventhub"`
	Datastore Datastore `yaml:"datastore"`
	Blob      Blob      `yaml:"blob"`
	Logging   Logging   `yaml:"logging"`
	HTTP      HTTP      `yaml:"http"`
	Jobs      Jobs      `yaml:"jobs"`

	Buildscript Buildscript `yaml:"buildscript"`
	API         API         `yaml:"api"`

	// origins maps a dotted key ("http.addr") to where its value came from.
	origins map[string]string
}

// Cluster is the cross-process wiring.
type Cluster struct {
	// SecretFile holds the shared cluster key as hex (at least 64 hex
	// digits, 32 bytes). Required when any tcp endpoint this process binds
	// or reaches is not on loopback; see ClusterKey.
	SecretFile string    `yaml:"secret_file"`
	Endpoints  Endpoints `yaml:"endpoints"`
}

// Endpoints is where each module's sockets are bound (by the process that
// runs it) and reached (by the others): tcp://HOST:PORT, ipc:///PATH or
// inproc://NAME. The field names are the module names.
type Endpoints struct {
	Eventhub    string `yaml:"eventhub"`
	Datastore   string `yaml:"datastore"`
	Blob        string `yaml:"blob"`
	Logging     string `yaml:"logging"`
	Buildscript string `yaml:"buildscript"`
	Jobs        string `yaml:"jobs"`
	API         string `yaml:"api"`
}

// Eventhub configures the event hub's durable log.
type Eventhub struct {
	// Backend is files (default: segment files under data_dir) or
	// postgres (a table; the hub then keeps no local state, and a second
	// hub process can take over).
	Backend string `yaml:"backend"`
	// DSN is the database for backend postgres.
	DSN string `yaml:"dsn"`
	// Retention, if set, is a Go duration ("720h"): events older than it
	// are removed, and readers that ask for them get a "too old" error.
	// Empty keeps every event (the data store is rebuilt from the log).
	Retention string `yaml:"retention"`
}

// Datastore configures the data store module.
type Datastore struct {
	// Driver is sqlite (default, a file in data_dir) or postgres.
	Driver string `yaml:"driver"`
	// DSN is the database to open; required for postgres. For sqlite the
	// default is a file under data_dir.
	DSN string `yaml:"dsn"`
	// KeyFile holds the key that seals secrets at rest: 64 hex digits
	// (AES-256). Default: data_dir/datastore/secrets.key, created on
	// first start.
	KeyFile string `yaml:"key_file"`
}

// Blob configures blob storage.
type Blob struct {
	// Backend is fs (default, under data_dir) or oci (Object Storage).
	Backend   string `yaml:"backend"`
	Namespace string `yaml:"namespace"`
	Bucket    string `yaml:"bucket"`
	Region    string `yaml:"region"`
	// Auth is instance_principal, resource_principal or config_file.
	Auth string `yaml:"auth"`
	// ConfigFile and Profile select the OCI config for auth config_file
	// (defaults: ~/.oci/config and DEFAULT).
	ConfigFile string `yaml:"config_file"`
	Profile    string `yaml:"profile"`
}

// Logging configures job logs.
type Logging struct {
	// MaxJobBytes bounds one job's stored log (default 100 MiB); output
	// past it is dropped after an explicit truncation line.
	MaxJobBytes int64 `yaml:"max_job_bytes"`
}

// DefaultMaxJobBytes is Logging.MaxJobBytes's default.
const DefaultMaxJobBytes = 100 << 20

// HTTP configures the process's HTTP listener.
type HTTP struct {
	Addr string `yaml:"addr"`
}

// API configures the api module.
type API struct {
	// KeepAlive is how often an idle event stream gets a comment line (a
	// Go duration, default 15s).
	KeepAlive string `yaml:"keep_alive"`
	// PollMax is the longest wait between two checks of a quiet polled
	// repository (a Go duration, default 1h); after a change the wait is
	// the repository's poll_seconds again.
	PollMax string `yaml:"poll_max"`
	// NoPoll turns polling off in this process (another api process polls).
	NoPoll bool `yaml:"no_poll"`
}

// Buildscript configures the scheduler.
type Buildscript struct {
	// LeaseTimeout is how long a runner may go without renewing a job's
	// lease before the job runs elsewhere (a Go duration, default 30s).
	LeaseTimeout string `yaml:"lease_timeout"`
	// AllowLocal lets repository URLs be local paths or file:// URLs
	// (default false: a URL would otherwise read the scheduler's disk).
	AllowLocal bool `yaml:"allow_local"`
}

// Jobs configures the job runner.
type Jobs struct {
	// StopTimeout is how long running jobs may go on after SIGTERM before
	// they are handed back to the scheduler (a Go duration, default 30s).
	StopTimeout string `yaml:"stop_timeout"`
	// Capacity is how many jobs the runner runs at once.
	Capacity int `yaml:"capacity"`
	// Labels are matched against a job's labels.
	Labels map[string]string `yaml:"labels"`
	// Executor is shell (default) or container.
	Executor string `yaml:"executor"`
}

// Enumerations.
const (
	All = "all" // Modules: every module

	EventsFiles    = "files"
	EventsPostgres = "postgres"

	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"

	BackendFS  = "fs"
	BackendOCI = "oci"

	AuthInstancePrincipal = "instance_principal"
	AuthResourcePrincipal = "resource_principal"
	AuthConfigFile        = "config_file"

	ExecutorShell     = "shell"
	ExecutorContainer = "container"
)

// Defaults of SPEC.md §2.
const (
	DefaultDataDir  = "./zeroci-data"
	DefaultHTTPAddr = "127.0.0.1:8080"
	DefaultCapacity = 2
)

// Default returns the configuration used when nothing is set: every module
// in one process, SQLite and blobs under ./zeroci-data, HTTP on
// 127.0.0.1:8080.
func Default() *Config {
	return &Config{
		Modules:   []string{All},
		DataDir:   DefaultDataDir,
		Eventhub:  Eventhub{Backend: EventsFiles},
		Datastore: Datastore{Driver: DriverSQLite},
		Blob:      Blob{Backend: BackendFS},
		Logging:   Logging{MaxJobBytes: DefaultMaxJobBytes},
		HTTP:      HTTP{Addr: DefaultHTTPAddr},
		Jobs:      Jobs{Capacity: DefaultCapacity, Executor: ExecutorShell},
	}
}

// Origin returns where the value of key (dotted, "http.addr") or of its
// nearest enclosing section came from, or "" for a default.
func (c *Config) Origin(key string) string {
	for {
		if o, ok := c.origins[key]; ok {
			return o
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return ""
		}
		key = key[:i]
	}
}

func (c *Config) setOrigin(key, origin string) {
	if c.origins == nil {
		c.origins = make(map[string]string)
	}
	c.origins[key] = origin
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	Origin string // "file.yaml:7", "$ZEROCI_HTTP_ADDR", "--http", or ""
	Key    string // dotted key, or "" for the whole file
	Msg    string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Origin != "" {
		b.WriteString(p.Origin)
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists the problems found in a configuration, in a stable order. It
// prints on one line and matches ErrInvalid.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "config: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// problems collects Problems and turns them into an *Error.
type problems struct {
	c    *Config
	list []Problem
}

func (ps *problems) add(key, format string, args ...any) {
	ps.list = append(ps.list, Problem{Origin: ps.c.Origin(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	return &Error{Problems: slices.Clone(ps.list)}
}
