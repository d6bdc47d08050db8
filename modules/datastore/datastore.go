// Package datastore is the data store module: repositories, builds, jobs,
// secrets and API tokens, served to the other modules over request/reply.
//
// The tables are a projection of the event log. A command (create_repo,
// trigger_build, update_job...) is checked against the current state,
// turned into an event and published to the hub; the projector, the only
// writer of the tables, follows the hub's log and applies every event
// exactly once, in sequence order, recording the last applied sequence in
// the same transaction (package store). The command answers once its
// event is applied, so a caller reads its own writes. Rebuilding the
// tables from the log therefore yields the same rows (Rebuild).
//
// Build numbers: commands on one repository are serialised, so the next
// number is decided and published before another trigger of the same
// repository looks: numbers start at 1 with no gap or duplicate. The data
// store runs in one process (SPEC.md §3).
//
// Secrets and webhook secrets travel in events and rest in the tables
// only sealed with AES-256-GCM under the data store's key; they are opened
// only for GetJobSecrets (a running job, under its lease) and
// GetWebhookSecret (the api module checking a webhook).
package datastore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/seal"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/datastore/store"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Summary says in one line what the module does, for --help.
const Summary = "repos, builds, jobs, secrets and tokens, projected from the event log"

// Tuning.
const (
	serveConcurrency = 256
	applyBatch       = 512 // events per projection transaction, at most
	lockStripes      = 256
	defaultBranch    = "main"
)

// Options configure the data store.
type Options struct {
	// Driver is store.DriverSQLite or store.DriverPostgres.
	Driver string
	// DSN is the PostgreSQL DSN, or the SQLite file (default
	// DATA_DIR/datastore/zeroci.db).
	DSN string
	// KeyFile holds the sealing key (default DATA_DIR/datastore/secrets.key,
	// created on first start).
	KeyFile string
}

// StoreOptions resolves o against a data directory.
func (o Options) StoreOptions(dataDir string) store.Options {
	so := store.Options{Driver: o.Driver, DSN: o.DSN}
	if so.Driver == "" {
		so.Driver = "sqlite"
	}
	if so.Driver == "sqlite" && so.DSN == "" {
		so.DSN = filepath.Join(dataDir, modules.Datastore, "zeroci.db")
	}
	return so
}

func (o Options) keyFile(dataDir string) string {
	if o.KeyFile != "" {
		return o.KeyFile
	}
	return filepath.Join(dataDir, modules.Datastore, "secrets.key")
}

// Datastore is the module.
type Datastore struct {
	opts Options

	log     zerolog.Logger
	tr      transport.Transport
	st      *store.Store
	release func() // gives up ownership of the database
	seal    *sealer
	svc     transport.Service
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	locks [lockStripes]sync.Mutex

	mu      sync.Mutex
	applied int64
	advance chan struct{} // closed and replaced whenever applied grows
	failed  error         // the projector's last failure, for waiters
}

// New returns the module, constructed without side effects.
func New(opts Options) *Datastore {
	return &Datastore{opts: opts, advance: make(chan struct{})}
}

// Name implements modules.Module.
func (d *Datastore) Name() string { return modules.Datastore }

// Start opens the database (migrating it), catches up with the event log
// and serves requests.
func (d *Datastore) Start(ctx context.Context, host modules.Host) error {
	d.log = host.Logger()
	d.tr = host.Transport()
	key, err := seal.LoadKey(d.opts.keyFile(host.DataDir()), d.opts.KeyFile == "")
	if err != nil {
		return err
	}
	if d.seal, err = newSealer(key); err != nil {
		return err
	}
	so := d.opts.StoreOptions(host.DataDir())
	if so.Driver == "sqlite" {
		if err := mkdirFor(so.DSN); err != nil {
			return err
		}
	}
	release, err := Own(ctx, so)
	if err != nil {
		return err
	}
	d.release = release
	st, err := store.Open(ctx, so)
	if err != nil {
		release()
		return fmt.Errorf("datastore: %w", err)
	}
	d.st = st
	applied, err := st.LastApplied(ctx)
	if err != nil {
		d.stop()
		return fmt.Errorf("datastore: %w", err)
	}
	d.applied = applied

	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Add(1)
	go d.project(runCtx, applied)

	// Serve once the tables have caught up with the log as it was now.
	if err := d.catchUp(ctx); err != nil {
		d.stop()
		return err
	}
	mux := rpc.NewMux(d.log)
	d.register(mux)
	svc, err := mux.Serve(d.tr, contracts.ServiceDatastore, transport.WithConcurrency(serveConcurrency))
	if err != nil {
		d.stop()
		return fmt.Errorf("datastore: serve: %w", err)
	}
	d.svc = svc
	d.log.Info().Str("driver", so.Driver).Int64("applied", d.lastApplied()).Msg("data store started")
	return nil
}

// catchUp waits until the projection reaches the hub's head as it is
// now. A hub that cannot be reached yet (another process, still
// starting) is waited for until ctx ends.
func (d *Datastore) catchUp(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for logged := false; ; {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := hubclient.Read(rctx, d.tr, contracts.ReadEvents{Since: d.lastApplied(), Limit: 1})
		cancel()
		if err == nil {
			return d.waitApplied(ctx, batch.Head)
		}
		if contracts.CodeOf(err) != contracts.CodeUnavailable || ctx.Err() != nil {
			return fmt.Errorf("datastore: reading the event hub's head: %w", err)
		}
		if !logged {
			d.log.Warn().Err(err).Msg("waiting for the event hub")
			logged = true
		}
		if err := sleep(ctx, backoff); err != nil {
			return fmt.Errorf("datastore: waiting for the event hub: %w", err)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Stop stops serving and projecting and closes the database.
func (d *Datastore) Stop(ctx context.Context) error {
	var err error
	if d.svc != nil {
		err = d.svc.Close()
	}
	return errors.Join(err, d.stop())
}

func (d *Datastore) stop() error {
	if d.cancel != nil {
		d.cancel()
		d.wg.Wait()
	}
	var err error
	if d.st != nil {
		err = d.st.Close()
	}
	if d.release != nil {
		d.release()
	}
	return err
}

// project follows the event log from applied and applies every event, in
// batches, until ctx ends.
func (d *Datastore) project(ctx context.Context, applied int64) {
	defer d.wg.Done()
	events := make(chan contracts.Event, applyBatch)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.applyLoop(ctx, events)
	}()
	defer wg.Wait()
	defer close(events)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := hubclient.Follow(ctx, d.tr, applied, func(ev contracts.Event) error {
			select {
			case events <- ev:
				applied = ev.Seq
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if ctx.Err() != nil {
			return
		}
		d.fail(fmt.Errorf("datastore: following the event log: %w", err))
		d.log.Error().Err(err).Int64("after", applied).Msg("following the event log failed; retrying")
		if sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// applyLoop applies events in batches: whatever has arrived, up to
// applyBatch, in one transaction.
func (d *Datastore) applyLoop(ctx context.Context, events <-chan contracts.Event) {
	batch := make([]contracts.Event, 0, applyBatch)
	for {
		ev, ok := <-events
		if !ok {
			return
		}
		batch = append(batch[:0], ev)
	fill:
		for len(batch) < applyBatch {
			select {
			case ev, ok := <-events:
				if !ok {
					break fill
				}
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		backoff := 50 * time.Millisecond
		for {
			_, err := d.st.Apply(ctx, batch)
			if err == nil {
				d.advanced(batch[len(batch)-1].Seq)
				break
			}
			if ctx.Err() != nil {
				return
			}
			d.fail(fmt.Errorf("datastore: applying events %d..%d: %w", batch[0].Seq, batch[len(batch)-1].Seq, err))
			d.log.Error().Err(err).Int64("from", batch[0].Seq).Msg("applying events failed; retrying")
			if sleep(ctx, backoff) != nil {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

func (d *Datastore) advanced(seq int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if seq > d.applied {
		d.applied = seq
		d.failed = nil
		close(d.advance)
		d.advance = make(chan struct{})
	}
}

func (d *Datastore) fail(err error) {
	d.mu.Lock()
	d.failed = err
	d.mu.Unlock()
}

func (d *Datastore) lastApplied() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied
}

// waitApplied waits until the event seq is applied.
func (d *Datastore) waitApplied(ctx context.Context, seq int64) error {
	for {
		d.mu.Lock()
		applied, ch, failed := d.applied, d.advance, d.failed
		d.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if failed != nil {
				return contracts.NewError(contracts.CodeUnavailable, fmt.Sprintf("event %d is stored but not yet applied: %v", seq, failed))
			}
			return contracts.NewError(contracts.CodeUnavailable, fmt.Sprintf("event %d is stored but not yet applied: %v", seq, ctx.Err()))
		}
	}
}

// lock serialises commands on one name (a repository or a token).
func (d *Datastore) lock(kind, name string) func() {
	h := fnv.New32a()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(name))
	m := &d.locks[h.Sum32()%lockStripes]
	m.Lock()
	return m.Unlock
}

// emit publishes an event and waits until the projection has applied it.
func (d *Datastore) emit(ctx context.Context, subject contracts.Subject, payload contracts.Message) (contracts.Event, error) {
	ev, err := hubclient.PublishNew(ctx, d.tr, subject, payload)
	if err != nil {
		return ev, err
	}
	return ev, d.waitApplied(ctx, ev.Seq)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
