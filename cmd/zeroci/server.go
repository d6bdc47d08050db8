package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/server"
)

func newServerCmd(log zerolog.Logger) *cobra.Command {
	var configFile, moduleList, dataDir, httpAddr string
	cmd := &cobra.Command{
		Use:   "server [--config FILE] [--modules LIST] [--data-dir DIR] [--http ADDR]",
		Short: "Run the zeroci server: every module, or those in --modules",
		Long:  serverHelp(),
		Args:  cobra.NoArgs,
		// Use already shows the flags, as SPEC.md §2 writes them.
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configFile, os.Environ())
			if err != nil {
				return runFailed(err)
			}
			for _, f := range []struct{ flag, key, value string }{
				{"modules", "modules", moduleList},
				{"data-dir", "data_dir", dataDir},
				{"http", "http.addr", httpAddr},
			} {
				if cmd.Flags().Changed(f.flag) {
					if err := cfg.Set(f.key, f.value, "--"+f.flag); err != nil {
						return runFailed(err)
					}
				}
			}
			return runFailed(server.Run(cmd.Context(), cfg, log))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config", "", "YAML configuration `FILE` (split mode; see above)")
	fl.StringVar(&moduleList, "modules", config.All, "comma separated `LIST` of modules to run in this process, or all")
	fl.StringVar(&dataDir, "data-dir", config.DefaultDataDir, "`DIR` for the process's data (database, blobs, keys)")
	fl.StringVar(&httpAddr, "http", config.DefaultHTTPAddr, "HTTP listen `ADDR` (/healthz, /readyz, the API)")
	return cmd
}

// serverHelp is `zeroci server --help`'s text, with the module list.
func serverHelp() string {
	var b strings.Builder
	b.WriteString(`Runs the modules in LIST (comma separated, default all). With no config, every
module runs in this process on an in-process transport, with data under
--data-dir and HTTP on 127.0.0.1:8080. SIGINT or SIGTERM stops the modules in
reverse order and exits 0.

Modules, in start order:
`)
	for _, m := range server.Modules() {
		fmt.Fprintf(&b, "  %-12s %s\n", m.Name, m.Summary)
	}
	b.WriteString(`
Split mode: run a subset of modules per process. The processes reach each
other at cluster.endpoints (tcp://HOST:PORT, ipc:///PATH, inproc://NAME) and
authenticate every message with the key in cluster.secret_file (hex, at
least 32 bytes, mode 0600; required for tcp beyond loopback). Without it,
processes on one host share DATA_DIR/cluster.key. See deploy/split/.

Settings, lowest precedence first: defaults, --config FILE, environment
variables ZEROCI_<SECTION>_<KEY> (ZEROCI_HTTP_ADDR, ZEROCI_DATASTORE_DSN,
ZEROCI_CLUSTER_ENDPOINTS_EVENTHUB, ZEROCI_MODULES=api,jobs,
ZEROCI_JOBS_LABELS=arch=amd64,os=linux), then these flags.

HTTP: GET /healthz answers 200 while the process is up; GET /readyz answers
200 when every module this process needs answers, else 503 naming them.

Exit status: 0 after a clean stop, 2 for a bad command line or
configuration (nothing started), 1 for other failures.`)
	return b.String()
}
