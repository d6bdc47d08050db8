package server

import (
	"context"
	"path/filepath"
	"time"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/api"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/fsstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/ocistore"
	"github.com/zeroci/zeroci/modules/buildscript"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/pglog"
	"github.com/zeroci/zeroci/modules/jobs"
	"github.com/zeroci/zeroci/modules/logging"
)

// ModuleInfo describes a module for help output.
type ModuleInfo struct {
	Name    string
	Summary string
}

// entry is one module the server can run.
type entry struct {
	name    string
	summary string
	new     func(cfg *config.Config) modules.Module
}

// registry lists every module in start order (modules.Names). It is the one
// place that imports the module packages.
func registry() []entry {
	return []entry{
		{modules.Eventhub, eventhub.Summary, func(cfg *config.Config) modules.Module { return eventhub.New(HubOptions(cfg)) }},
		{modules.Datastore, datastore.Summary, func(cfg *config.Config) modules.Module { return datastore.New(DatastoreOptions(cfg)) }},
		{modules.Blob, blob.Summary, func(cfg *config.Config) modules.Module { return blob.New(BlobOptions(cfg)) }},
		{modules.Logging, logging.Summary, func(cfg *config.Config) modules.Module { return logging.New(LoggingOptions(cfg)) }},
		{modules.Buildscript, buildscript.Summary, func(cfg *config.Config) modules.Module { return buildscript.New(BuildscriptOptions(cfg)) }},
		{modules.Jobs, jobs.Summary, func(cfg *config.Config) modules.Module { return jobs.New(JobsOptions(cfg)) }},
		{modules.API, api.Summary, func(cfg *config.Config) modules.Module { return api.New(APIOptions(cfg)) }},
	}
}

// Modules describes every module, in start order.
func Modules() []ModuleInfo {
	var out []ModuleInfo
	for _, e := range registry() {
		out = append(out, ModuleInfo{Name: e.name, Summary: e.summary})
	}
	return out
}

// build constructs the named modules, in start order.
func build(cfg *config.Config, names []string) []modules.Module {
	var out []modules.Module
	for _, e := range registry() {
		for _, n := range names {
			if n == e.name {
				out = append(out, e.new(cfg))
			}
		}
	}
	return out
}

// HubDir is where the files backend keeps the event log.
func HubDir(dataDir string) string { return filepath.Join(dataDir, modules.Eventhub, "log") }

// OpenEventLog opens the event log cfg configures.
func OpenEventLog(ctx context.Context, cfg *config.Config, dataDir string) (eventlog.Log, error) {
	if cfg.Eventhub.Backend == config.EventsPostgres {
		return pglog.Open(ctx, cfg.Eventhub.DSN, pglog.Options{})
	}
	return filelog.Open(HubDir(dataDir), filelog.Options{})
}

// HubOptions are the event hub's options from cfg (validated).
func HubOptions(cfg *config.Config) eventhub.Options {
	retention, _ := time.ParseDuration(cfg.Eventhub.Retention) // Validate checked it
	return eventhub.Options{
		OpenLog: func(ctx context.Context, dataDir string) (eventlog.Log, error) {
			return OpenEventLog(ctx, cfg, dataDir)
		},
		Retention: retention,
		Shared:    cfg.Eventhub.Backend == config.EventsPostgres,
	}
}

// DatastoreOptions are the data store's options from cfg.
func DatastoreOptions(cfg *config.Config) datastore.Options {
	return datastore.Options{Driver: cfg.Datastore.Driver, DSN: cfg.Datastore.DSN, KeyFile: cfg.Datastore.KeyFile}
}

// BlobOptions are the blob module's options from cfg: the fs backend under
// DATA_DIR/blob, or OCI Object Storage.
func BlobOptions(cfg *config.Config) blob.Options {
	b := cfg.Blob
	return blob.Options{Open: func(ctx context.Context, dataDir string) (blobstore.Backend, error) {
		if b.Backend == config.BackendOCI {
			return ocistore.New(ctx, ocistore.Config{
				Namespace: b.Namespace, Bucket: b.Bucket, Region: b.Region,
				Auth: b.Auth, ConfigFile: b.ConfigFile, Profile: b.Profile,
				SpoolDir: filepath.Join(dataDir, modules.Blob, "spool"),
			})
		}
		return fsstore.New(filepath.Join(dataDir, modules.Blob, "store"))
	}}
}

// BuildscriptOptions are the scheduler's options from the configuration.
func BuildscriptOptions(cfg *config.Config) buildscript.Options {
	return buildscript.Options{LeaseTimeout: duration(cfg.Buildscript.LeaseTimeout), AllowLocal: cfg.Buildscript.AllowLocal}
}

// APIOptions are the api module's options from the configuration.
func APIOptions(cfg *config.Config) api.Options {
	return api.Options{AllowLocal: cfg.Buildscript.AllowLocal, KeepAlive: duration(cfg.API.KeepAlive),
		PollMax: duration(cfg.API.PollMax), NoPoll: cfg.API.NoPoll}
}

// JobsOptions are the runner's options from the configuration.
func JobsOptions(cfg *config.Config) jobs.Options {
	return jobs.Options{Capacity: cfg.Jobs.Capacity, Labels: cfg.Jobs.Labels, Executor: cfg.Jobs.Executor,
		StopTimeout: duration(cfg.Jobs.StopTimeout)}
}

// duration parses a validated duration; "" is 0 (the default).
func duration(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// LoggingOptions are the logging module's options from the configuration.
func LoggingOptions(cfg *config.Config) logging.Options {
	return logging.Options{MaxJobBytes: cfg.Logging.MaxJobBytes}
}
