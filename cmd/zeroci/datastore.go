package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/datastore/store"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// storeFlags are the flags of the commands that open the data store.
type storeFlags struct{ configFile, dataDir string }

func (f *storeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.configFile, "config", "", "YAML configuration `FILE` (as for zeroci server)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", config.DefaultDataDir, "the server's data `DIR`")
}

// load returns the configuration and the absolute data directory.
func (f *storeFlags) load(cmd *cobra.Command) (*config.Config, string, error) {
	cfg, err := config.Load(f.configFile, os.Environ())
	if err != nil {
		return nil, "", err
	}
	if cmd.Flags().Changed("data-dir") {
		if err := cfg.Set("data_dir", f.dataDir, "--data-dir"); err != nil {
			return nil, "", err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, "", err
	}
	return cfg, dir, nil
}

// open loads the configuration and returns it, the data directory and
// the data store's options (creating the SQLite file's directory).
func (f *storeFlags) open(cmd *cobra.Command) (*config.Config, string, store.Options, error) {
	cfg, dir, err := f.load(cmd)
	if err != nil {
		return nil, "", store.Options{}, err
	}
	so := server.DatastoreOptions(cfg).StoreOptions(dir)
	if so.Driver == store.DriverSQLite {
		if err := os.MkdirAll(filepath.Dir(so.DSN), 0o700); err != nil {
			return nil, "", so, err
		}
	}
	return cfg, dir, so, nil
}

func newMigrateCmd() *cobra.Command {
	var f storeFlags
	cmd := &cobra.Command{
		Use:   "migrate [--config FILE]",
		Short: "Apply the data store's migrations (the server also does on start)",
		Long: `Applies the data store's schema migrations to the configured database (SQLite
under the data directory by default, or datastore.dsn for PostgreSQL) and
prints what it applied. Safe to run while other processes start: migrations
are serialised by a lock.`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, _, so, err := f.open(cmd)
			if err != nil {
				return runFailed(err)
			}
			applied, err := store.Migrate(cmd.Context(), so)
			if err != nil {
				return runFailed(err)
			}
			if len(applied) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "the data store is up to date")
			}
			for _, v := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied migration %d\n", v)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newDatastoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "datastore",
		Short: "Data store maintenance",
		Args:  cobra.NoArgs,
	}
	var f storeFlags
	rebuild := &cobra.Command{
		Use:   "rebuild [--config FILE]",
		Short: "Recreate every data store table from the event log",
		Long: `Empties the data store's tables and applies every event of the hub's log
again: the tables are a projection of the log, so the result has the same rows.
Stop the server first (the event hub's file log and the data store are locked
while it runs).`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, dir, so, err := f.open(cmd)
			if err != nil {
				return runFailed(err)
			}
			n, err := rebuild(cmd.Context(), cfg, dir, so)
			if err != nil {
				return runFailed(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rebuilt the data store from %d events\n", n)
			return nil
		},
	}
	f.add(rebuild)
	cmd.AddCommand(rebuild)
	return cmd
}

func rebuild(ctx context.Context, cfg *config.Config, dataDir string, so store.Options) (int64, error) {
	elog, err := server.OpenEventLog(ctx, cfg, dataDir)
	if errors.Is(err, eventlog.ErrLocked) {
		return 0, fmt.Errorf("the event hub is running (its log is locked): stop the server first")
	}
	if err != nil {
		return 0, err
	}
	defer elog.Close()
	release, err := datastore.Own(ctx, so)
	if err != nil {
		return 0, err
	}
	defer release()
	st, err := store.Open(ctx, so)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return datastore.Rebuild(ctx, st, func(ctx context.Context, since int64) ([]contracts.Event, error) {
		recs, err := elog.Read(ctx, since, 1000)
		if err != nil {
			return nil, err
		}
		events := make([]contracts.Event, len(recs))
		for i, r := range recs {
			if events[i], err = eventhub.DecodeRecord(r); err != nil {
				return nil, err
			}
		}
		return events, nil
	})
}
