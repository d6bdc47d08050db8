// Package blob is the blob module: artifacts and caches, stored whole by
// a blobstore.Backend (files under the data directory, or OCI Object
// Storage) and moved over the transport in chunks (contracts.PutBegin ...
// contracts.DeleteBlob; package blobclient is the client).
//
// # Uploads
//
// put_begin opens an upload: a staging file DATA_DIR/blob/uploads/<id>.
// put_chunk writes at its offset. Chunks are stored without gaps: a chunk
// that ends within what is stored is a no-op (a resend), one that starts
// within it stores its new tail, and one that starts past it waits up to
// Options.ReorderWait for the chunks before it (a pipelining client's
// requests may be handled out of order) and is then refused with conflict.
// A chunk further ahead than Options.ReorderWindow chunks is refused at
// once. The staged bytes are hashed as they are stored, so put_commit
// checks size and SHA-256 without reading them again, then hands the file
// to the backend's Put with the expected digest (a mismatch stores
// nothing) and removes it. A repeated put_commit of a committed upload
// answers the same BlobInfo for a while (tombstoneTTL), so a commit is
// safe to retry. put_abort, and an upload idle for Options.UploadTTL, drop
// the staging file.
//
// Uploads do not survive a restart of the module: Start empties the
// staging directory, and a client whose upload vanished gets not_found and
// starts over. Making them survive would cost an fsync and a metadata
// write per chunk, for the rare case of a restart during an upload, which
// the client has to handle anyway (its process may be the one that
// restarts); staging files are therefore not fsynced. The backend's Put is
// what makes a blob durable.
//
// # Reads
//
// get reads a range (at most contracts.MaxBlobChunk) through the backend
// and answers with the blob's size and digest, so a reader going chunk by
// chunk notices when the blob was replaced between two chunks.
//
// # Errors
//
// Requests are validated by rpc (invalid_argument), keys again by
// blobstore.CheckKey, content types by blobstore.PutOptions.Normalize
// (at put_begin, not only at the commit). Backend errors map to codes: ErrNotFound →
// not_found, ErrInvalidKey and ErrRange → invalid_argument, ErrChecksum →
// conflict on a write and internal on a read (the stored blob is
// corrupt), ErrUnavailable → unavailable, ErrDenied → internal (the
// module's storage credentials are refused: an operator's problem),
// ErrInvalidArgument → invalid_argument.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Summary says in one line what the module does, for --help.
const Summary = "artifacts and caches on the local filesystem or OCI Object Storage"

// Defaults of Options.
const (
	// DefaultChunkSize is the chunk size put_begin asks clients for. A
	// chunk costs about 15 times its size in transient allocations on its
	// way (JSON with base64, envelope, transport copies, decoding), so
	// 512 KiB keeps a client's window of 4 chunks in flight around 30 MiB
	// of heap for client and module together; larger chunks did not move
	// data faster (BenchmarkTransfer: the JSON coding is the bottleneck).
	DefaultChunkSize = 512 << 10
	// DefaultUploadTTL is how long an upload may stay idle.
	DefaultUploadTTL = time.Hour
	// DefaultMaxUploads bounds the uploads open at once (each holds a
	// staging file open).
	DefaultMaxUploads = 1024
	// DefaultReorderWait is how long a chunk that arrived early waits for
	// the chunks before it.
	DefaultReorderWait = 5 * time.Second
	// DefaultReorderWindow is how many chunks ahead of the stored bytes a
	// chunk may arrive and wait.
	DefaultReorderWindow = 16
	// DefaultConcurrency is how many requests the module handles at once.
	// Each may hold a decoded chunk of up to contracts.MaxBlobChunk and
	// several times that in transient encodings, so this also bounds the
	// module's memory; the transfer rate is bound by CPU well before.
	DefaultConcurrency = 64
)

// tombstoneTTL is how long a committed upload's result is remembered for
// a retried put_commit (at most Options.UploadTTL).
const tombstoneTTL = 10 * time.Minute

// ErrInvalidOptions matches the errors of Options.Validate.
var ErrInvalidOptions = errors.New("blob: invalid options")

// Options configure the module. Exactly one of Backend and Open is set.
type Options struct {
	// Backend is the store to use; the module does not close it.
	Backend blobstore.Backend
	// Open opens the store at Start; dataDir is the process's data
	// directory. If the backend it returns is an io.Closer, Stop closes it.
	Open func(ctx context.Context, dataDir string) (blobstore.Backend, error)

	// ChunkSize is the chunk size put_begin asks for (default
	// DefaultChunkSize, at most contracts.MaxBlobChunk).
	ChunkSize int
	// UploadTTL drops an upload idle for this long (default
	// DefaultUploadTTL).
	UploadTTL time.Duration
	// MaxUploads bounds the uploads open at once; put_begin answers
	// unavailable beyond it (default DefaultMaxUploads).
	MaxUploads int
	// ReorderWait and ReorderWindow bound how long and how far ahead an
	// early chunk waits for the ones before it (defaults
	// DefaultReorderWait, DefaultReorderWindow chunks of ChunkSize).
	ReorderWait   time.Duration
	ReorderWindow int
	// Concurrency is how many requests the module handles at once
	// (default DefaultConcurrency). At most half of them wait for earlier
	// chunks, so waiting chunks never hold every slot.
	Concurrency int
}

func (o *Options) defaults() {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.UploadTTL == 0 {
		o.UploadTTL = DefaultUploadTTL
	}
	if o.MaxUploads == 0 {
		o.MaxUploads = DefaultMaxUploads
	}
	if o.ReorderWait == 0 {
		o.ReorderWait = DefaultReorderWait
	}
	if o.ReorderWindow == 0 {
		o.ReorderWindow = DefaultReorderWindow
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
}

// Validate checks o (zero tuning fields mean their defaults).
func (o Options) Validate() error {
	switch {
	case o.Backend == nil && o.Open == nil:
		return fmt.Errorf("%w: no backend: set Backend or Open", ErrInvalidOptions)
	case o.Backend != nil && o.Open != nil:
		return fmt.Errorf("%w: both Backend and Open are set", ErrInvalidOptions)
	case o.ChunkSize < 0 || o.ChunkSize > contracts.MaxBlobChunk:
		return fmt.Errorf("%w: chunk size %d is out of range 1..%d", ErrInvalidOptions, o.ChunkSize, contracts.MaxBlobChunk)
	case o.UploadTTL < 0, o.ReorderWait < 0:
		return fmt.Errorf("%w: negative duration", ErrInvalidOptions)
	case o.MaxUploads < 0, o.ReorderWindow < 0, o.Concurrency < 0:
		return fmt.Errorf("%w: negative count", ErrInvalidOptions)
	}
	return nil
}

// Blob is the blob module.
type Blob struct {
	opts Options

	log     zerolog.Logger
	backend blobstore.Backend
	closer  io.Closer // the backend Open returned, if it is one
	dir     string    // staging directory
	svc     transport.Service
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	uploads map[contracts.ID]*upload
	open    int // uploads not yet committed or dropped
	waiting int // put_chunk handlers waiting for earlier chunks
	stopped bool
}

// New returns the module, constructed without side effects.
func New(opts Options) *Blob {
	return &Blob{opts: opts}
}

// Name implements modules.Module.
func (b *Blob) Name() string { return modules.Blob }

// Start opens the backend, empties the staging directory and serves the
// blob service.
func (b *Blob) Start(ctx context.Context, host modules.Host) error {
	if err := b.opts.Validate(); err != nil {
		return err
	}
	b.opts.defaults()
	b.log = host.Logger()
	b.dir = filepath.Join(host.DataDir(), modules.Blob, "uploads")
	// Uploads do not survive a restart (see the package doc).
	if err := os.RemoveAll(b.dir); err != nil {
		return fmt.Errorf("blob: clean staging directory: %w", err)
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return fmt.Errorf("blob: staging directory: %w", err)
	}
	b.backend = b.opts.Backend
	if b.opts.Open != nil {
		be, err := b.opts.Open(ctx, host.DataDir())
		if err != nil {
			return fmt.Errorf("blob: open backend: %w", err)
		}
		if be == nil {
			return errors.New("blob: open backend: it returned no backend")
		}
		b.backend = be
		b.closer, _ = be.(io.Closer)
	}
	b.uploads = make(map[contracts.ID]*upload)

	mux := rpc.NewMux(b.log)
	rpc.Handle(mux, b.putBegin)
	rpc.Handle(mux, b.putChunk)
	rpc.Handle(mux, b.putCommit)
	rpc.Handle(mux, b.putAbort)
	rpc.Handle(mux, b.get)
	rpc.Handle(mux, b.stat)
	rpc.Handle(mux, b.list)
	rpc.Handle(mux, b.delete)
	svc, err := mux.Serve(host.Transport(), contracts.ServiceBlob, transport.WithConcurrency(b.opts.Concurrency))
	if err != nil {
		b.closeBackend()
		return fmt.Errorf("blob: serve: %w", err)
	}
	b.svc = svc

	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Add(1)
	go b.sweep(runCtx)
	b.log.Info().Str("staging", b.dir).Int("chunk_size", b.opts.ChunkSize).Msg("blob store started")
	return nil
}

// Stop stops serving, drops the uploads in progress and closes the
// backend if the module opened it. Idempotent.
func (b *Blob) Stop(ctx context.Context) error {
	var errs []error
	if b.svc != nil {
		errs = append(errs, b.svc.Close())
	}
	if b.cancel != nil {
		b.cancel()
		b.wg.Wait()
	}
	b.mu.Lock()
	if b.stopped || b.uploads == nil {
		b.mu.Unlock()
		return errors.Join(errs...)
	}
	b.stopped = true
	ups := b.uploads
	b.uploads = map[contracts.ID]*upload{}
	b.mu.Unlock()
	for _, u := range ups {
		u.mu.Lock()
		if err := u.drop(); err != nil {
			errs = append(errs, err)
		}
		u.mu.Unlock()
	}
	errs = append(errs, b.closeBackend())
	return errors.Join(errs...)
}

func (b *Blob) closeBackend() error {
	if b.closer == nil {
		return nil
	}
	c := b.closer
	b.closer = nil
	if err := c.Close(); err != nil {
		return fmt.Errorf("blob: close backend: %w", err)
	}
	return nil
}

// uploadState is where an upload is in its life.
type uploadState int

const (
	uploadOpen       uploadState = iota // taking chunks
	uploadCommitting                    // its file is being handed to the backend
	uploadCommitted                     // done: a tombstone remembering info
	uploadDropped                       // aborted, expired or stopped
)

// upload is one upload in progress. Its fields are guarded by mu; the
// file is read without mu while committing (nothing writes it then).
type upload struct {
	id          contracts.ID
	key         string
	contentType string
	path        string

	mu      sync.Mutex
	state   uploadState
	f       *os.File
	size    int64     // bytes stored without gaps from offset 0
	sum     hash.Hash // SHA-256 of those bytes
	last    time.Time // last activity
	info    contracts.BlobInfo
	advance chan struct{} // closed and replaced whenever size grows or state changes
}

// notify wakes the chunks waiting on u. Called with u.mu held.
func (u *upload) notify() {
	close(u.advance)
	u.advance = make(chan struct{})
}

// drop closes and removes u's staging file. Called with u.mu held.
func (u *upload) drop() error {
	if u.state == uploadCommitted || u.state == uploadDropped {
		u.state = uploadDropped
		return nil
	}
	u.state = uploadDropped
	u.notify()
	errs := []error{u.f.Close()}
	if err := os.Remove(u.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("blob: drop upload %s: %w", u.id, err)
	}
	return nil
}

// lookup returns the upload id names, or not_found.
func (b *Blob) lookup(id contracts.ID) (*upload, error) {
	b.mu.Lock()
	u := b.uploads[id]
	b.mu.Unlock()
	if u == nil {
		return nil, uploadNotFound(id)
	}
	return u, nil
}

func uploadNotFound(id contracts.ID) error {
	return contracts.NewError(contracts.CodeNotFound,
		fmt.Sprintf("no upload %s: unknown, aborted, expired, or the blob module restarted", id))
}

// forget removes u from the table of uploads.
func (b *Blob) forget(u *upload, wasOpen bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.uploads[u.id] == u {
		delete(b.uploads, u.id)
	}
	if wasOpen {
		b.open--
	}
}

func (b *Blob) putBegin(ctx context.Context, req contracts.PutBegin) (contracts.Message, error) {
	if err := blobstore.CheckKey(req.Key); err != nil {
		return nil, contracts.NewError(contracts.CodeInvalidArgument, err.Error())
	}
	// Refuse now what the backend would refuse at the commit.
	if _, err := (blobstore.PutOptions{ContentType: req.ContentType, Size: -1}).Normalize(); err != nil {
		return nil, contracts.NewError(contracts.CodeInvalidArgument, err.Error())
	}
	b.mu.Lock()
	switch {
	case b.stopped:
		b.mu.Unlock()
		return nil, contracts.NewError(contracts.CodeUnavailable, "the blob module is stopping")
	case b.open >= b.opts.MaxUploads:
		b.mu.Unlock()
		return nil, contracts.NewError(contracts.CodeUnavailable,
			fmt.Sprintf("%d uploads in progress, the most this blob store takes; try again later", b.open))
	}
	b.open++
	b.mu.Unlock()

	now := time.Now()
	id := contracts.NewID(now)
	path := filepath.Join(b.dir, id.String())
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		b.mu.Lock()
		b.open--
		b.mu.Unlock()
		return nil, fmt.Errorf("blob: put_begin %s: staging file: %w", req.Key, err)
	}
	u := &upload{
		id: id, key: req.Key, contentType: req.ContentType, path: path,
		f: f, sum: sha256.New(), last: now, advance: make(chan struct{}),
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		u.mu.Lock()
		_ = u.drop()
		u.mu.Unlock()
		return nil, contracts.NewError(contracts.CodeUnavailable, "the blob module is stopping")
	}
	b.uploads[id] = u
	b.mu.Unlock()
	return contracts.Upload{UploadID: id, ChunkSize: b.opts.ChunkSize}, nil
}

func (b *Blob) putChunk(ctx context.Context, req contracts.PutChunk) (contracts.Message, error) {
	u, err := b.lookup(req.UploadID)
	if err != nil {
		return nil, err
	}
	end := req.Offset + int64(len(req.Data))
	var timer *time.Timer // set once the chunk waits
	defer func() {
		if timer != nil {
			timer.Stop()
			b.stopWaiting()
		}
	}()
	for {
		u.mu.Lock()
		if err := u.writable(); err != nil {
			u.mu.Unlock()
			return nil, err
		}
		switch {
		case end <= u.size: // a resend of stored bytes
			u.last = time.Now()
			size := u.size
			u.mu.Unlock()
			return contracts.Received{UploadID: u.id, Size: size}, nil
		case req.Offset <= u.size:
			size, err := u.store(req.Data[u.size-req.Offset:])
			u.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("blob: put_chunk %s at %d: %w", u.id, req.Offset, err)
			}
			return contracts.Received{UploadID: u.id, Size: size}, nil
		case req.Offset-u.size > int64(b.opts.ReorderWindow)*int64(b.opts.ChunkSize):
			size := u.size
			u.mu.Unlock()
			return nil, chunkConflict(req.Offset, size)
		}
		// The chunk arrived before the ones ahead of it: wait for them.
		advance, size := u.advance, u.size
		u.mu.Unlock()
		if timer == nil {
			if !b.startWaiting() {
				return nil, chunkConflict(req.Offset, size)
			}
			timer = time.NewTimer(b.opts.ReorderWait)
		}
		select {
		case <-advance:
		case <-timer.C:
			u.mu.Lock()
			size := u.size
			u.mu.Unlock()
			if req.Offset <= size {
				continue // it came just now
			}
			return nil, chunkConflict(req.Offset, size)
		case <-ctx.Done():
			return nil, fmt.Errorf("blob: put_chunk %s at %d: %w", u.id, req.Offset, ctx.Err())
		}
	}
}

// startWaiting counts a put_chunk that waits for earlier chunks, unless
// half the handler slots already do.
func (b *Blob) startWaiting() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting >= max(b.opts.Concurrency/2, 1) {
		return false
	}
	b.waiting++
	return true
}

func (b *Blob) stopWaiting() {
	b.mu.Lock()
	b.waiting--
	b.mu.Unlock()
}

func chunkConflict(off, size int64) error {
	return contracts.NewError(contracts.CodeConflict,
		fmt.Sprintf("chunk at offset %d is past the %d bytes stored; send the chunks before it first", off, size))
}

// writable says whether u takes chunks. Called with u.mu held.
func (u *upload) writable() error {
	switch u.state {
	case uploadCommitting:
		return contracts.NewError(contracts.CodeConflict, fmt.Sprintf("upload %s is being committed", u.id))
	case uploadCommitted:
		return contracts.NewError(contracts.CodeConflict, fmt.Sprintf("upload %s is committed", u.id))
	case uploadDropped:
		return uploadNotFound(u.id)
	}
	return nil
}

// store appends p at u.size. Called with u.mu held.
func (u *upload) store(p []byte) (int64, error) {
	if _, err := u.f.WriteAt(p, u.size); err != nil {
		return u.size, err
	}
	u.sum.Write(p)
	u.size += int64(len(p))
	u.last = time.Now()
	u.notify()
	return u.size, nil
}

func (b *Blob) putCommit(ctx context.Context, req contracts.PutCommit) (contracts.Message, error) {
	u, err := b.lookup(req.UploadID)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	switch u.state {
	case uploadCommitted:
		info := u.info
		u.mu.Unlock()
		if req.Size != info.Size || req.SHA256 != info.SHA256 {
			return nil, contracts.NewError(contracts.CodeConflict,
				fmt.Sprintf("upload %s was committed with %d bytes, sha256 %s", u.id, info.Size, info.SHA256))
		}
		return info, nil
	case uploadCommitting, uploadDropped:
		err := u.writable()
		u.mu.Unlock()
		return nil, err
	}
	if req.Size != u.size {
		size := u.size
		u.mu.Unlock()
		return nil, contracts.NewError(contracts.CodeConflict,
			fmt.Sprintf("upload %s holds %d bytes, the commit says %d", u.id, size, req.Size))
	}
	if sum := hex.EncodeToString(u.sum.Sum(nil)); sum != req.SHA256 {
		u.mu.Unlock()
		return nil, contracts.NewError(contracts.CodeConflict,
			fmt.Sprintf("upload %s: the bytes received have sha256 %s, the commit says %s", u.id, sum, req.SHA256))
	}
	u.state = uploadCommitting
	u.notify()
	u.mu.Unlock()

	stored, err := b.backend.Put(ctx, u.key, io.NewSectionReader(u.f, 0, req.Size),
		blobstore.PutOptions{ContentType: u.contentType, Size: req.Size, SHA256: req.SHA256})

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != uploadCommitting { // dropped by Stop meanwhile
		if err == nil {
			return toInfo(stored), nil
		}
		return nil, storeError("put_commit "+u.key, err, contracts.CodeConflict)
	}
	if err != nil {
		if errors.Is(err, blobstore.ErrChecksum) {
			// The staged file no longer matches what was hashed as it
			// arrived: it cannot be committed.
			dropErr := u.drop()
			b.forget(u, true)
			return nil, errors.Join(storeError("put_commit "+u.key, err, contracts.CodeConflict), dropErr)
		}
		// Transient (unavailable, cancelled) or the operator's to fix: the
		// client may retry the commit or abort.
		u.state = uploadOpen
		u.last = time.Now()
		u.notify()
		return nil, storeError("put_commit "+u.key, err, contracts.CodeConflict)
	}
	info := toInfo(stored)
	if info.Size != req.Size || info.SHA256 != req.SHA256 {
		b.log.Error().Str("key", u.key).Int64("size", info.Size).Str("sha256", info.SHA256).
			Msg("backend stored something else than it was given")
	}
	dropErr := u.drop()
	u.state = uploadCommitted
	u.info = info
	u.last = time.Now()
	b.mu.Lock()
	b.open--
	b.mu.Unlock()
	if dropErr != nil {
		b.log.Warn().Err(dropErr).Msg("committed upload's staging file not removed")
	}
	return info, nil
}

func (b *Blob) putAbort(ctx context.Context, req contracts.PutAbort) (contracts.Message, error) {
	u, err := b.lookup(req.UploadID)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	switch u.state {
	case uploadCommitting, uploadCommitted, uploadDropped:
		return nil, u.writable()
	}
	err = u.drop()
	b.forget(u, true)
	if err != nil {
		return nil, err
	}
	return contracts.OK{}, nil
}

// sweep drops idle uploads and forgets old tombstones until ctx ends.
func (b *Blob) sweep(ctx context.Context) {
	defer b.wg.Done()
	every := min(max(b.opts.UploadTTL/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.sweepOnce(now)
		}
	}
}

func (b *Blob) sweepOnce(now time.Time) {
	b.mu.Lock()
	ups := make([]*upload, 0, len(b.uploads))
	for _, u := range b.uploads {
		ups = append(ups, u)
	}
	b.mu.Unlock()
	keep := min(tombstoneTTL, b.opts.UploadTTL)
	for _, u := range ups {
		u.mu.Lock()
		switch {
		case u.state == uploadOpen && now.Sub(u.last) > b.opts.UploadTTL:
			b.log.Info().Str("upload", u.id.String()).Str("key", u.key).Int64("size", u.size).
				Dur("idle", now.Sub(u.last)).Msg("idle upload dropped")
			if err := u.drop(); err != nil {
				b.log.Warn().Err(err).Msg("idle upload")
			}
			b.forget(u, true)
		case u.state == uploadCommitted && now.Sub(u.last) > keep:
			b.forget(u, false)
		}
		u.mu.Unlock()
	}
}

func (b *Blob) get(ctx context.Context, req contracts.GetBlob) (contracts.Message, error) {
	if err := blobstore.CheckKey(req.Key); err != nil {
		return nil, contracts.NewError(contracts.CodeInvalidArgument, err.Error())
	}
	length := req.Length
	if length == 0 {
		length = contracts.MaxBlobChunk
	}
	op := fmt.Sprintf("get %s at %d", req.Key, req.Offset)
	rc, info, err := b.backend.Get(ctx, req.Key, req.Offset, int64(length))
	if err != nil {
		return nil, storeError(op, err, contracts.CodeInternal)
	}
	defer rc.Close()
	if req.Offset > info.Size {
		return nil, contracts.NewError(contracts.CodeInvalidArgument,
			fmt.Sprintf("%s: offset is past the size %d", op, info.Size))
	}
	data := make([]byte, min(int64(length), info.Size-req.Offset))
	if n, err := io.ReadFull(rc, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("the backend returned %d bytes, its size says %d", n, len(data))
		}
		return nil, storeError(op, err, contracts.CodeInternal)
	}
	// Read on to the end of the range: a backend checks a whole blob's
	// digest there.
	var one [1]byte
	if n, err := rc.Read(one[:]); n > 0 {
		return nil, storeError(op, errors.New("the backend returned more than was asked"), contracts.CodeInternal)
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil, storeError(op, err, contracts.CodeInternal)
	}
	return contracts.BlobChunk{
		Key:        req.Key,
		Offset:     req.Offset,
		Data:       data,
		SHA256:     contracts.BlobSHA256(data),
		Size:       info.Size,
		BlobSHA256: info.SHA256,
		EOF:        req.Offset+int64(len(data)) >= info.Size,
	}, nil
}

func (b *Blob) stat(ctx context.Context, req contracts.StatBlob) (contracts.Message, error) {
	if err := blobstore.CheckKey(req.Key); err != nil {
		return nil, contracts.NewError(contracts.CodeInvalidArgument, err.Error())
	}
	info, err := b.backend.Stat(ctx, req.Key)
	if err != nil {
		return nil, storeError("stat "+req.Key, err, contracts.CodeInternal)
	}
	return toInfo(info), nil
}

func (b *Blob) list(ctx context.Context, req contracts.ListBlobs) (contracts.Message, error) {
	if err := blobstore.CheckPrefix(req.Prefix); err != nil {
		return nil, contracts.NewError(contracts.CodeInvalidArgument, err.Error())
	}
	limit := req.Limit
	if limit == 0 {
		limit = contracts.DefaultListLimit
	}
	infos, next, err := b.backend.List(ctx, req.Prefix, req.PageToken, limit)
	if err != nil {
		return nil, storeError("list "+req.Prefix, err, contracts.CodeInternal)
	}
	out := contracts.BlobListing{Blobs: make([]contracts.BlobInfo, 0, len(infos)), NextPageToken: next}
	for _, info := range infos {
		out.Blobs = append(out.Blobs, toInfo(info))
	}
	return out, nil
}

func (b *Blob) delete(ctx context.Context, req contracts.DeleteBlob) (contracts.Message, error) {
	if err := blobstore.CheckKey(req.Key); err != nil {
		return nil, contracts.NewError(contracts.CodeInvalidArgument, err.Error())
	}
	if err := b.backend.Delete(ctx, req.Key); err != nil {
		return nil, storeError("delete "+req.Key, err, contracts.CodeInternal)
	}
	return contracts.OK{}, nil
}

func toInfo(i blobstore.Info) contracts.BlobInfo {
	return contracts.BlobInfo{Key: i.Key, Size: i.Size, SHA256: i.SHA256, ContentType: i.ContentType, ModTime: i.ModTime.UTC()}
}

// storeError maps a backend error to a reply code; checksum is the code of
// blobstore.ErrChecksum (conflict on a write, internal on a read).
func storeError(op string, err error, checksum contracts.Code) error {
	msg := fmt.Sprintf("blob: %s: %v", op, err)
	switch {
	case errors.Is(err, blobstore.ErrNotFound):
		return contracts.NewError(contracts.CodeNotFound, msg)
	case errors.Is(err, blobstore.ErrInvalidKey), errors.Is(err, blobstore.ErrRange),
		errors.Is(err, blobstore.ErrInvalidArgument):
		return contracts.NewError(contracts.CodeInvalidArgument, msg)
	case errors.Is(err, blobstore.ErrChecksum):
		if checksum == contracts.CodeInternal {
			msg += " (the stored blob is corrupt)"
		}
		return contracts.NewError(checksum, msg)
	case errors.Is(err, blobstore.ErrUnavailable):
		return contracts.NewError(contracts.CodeUnavailable, msg)
	case errors.Is(err, blobstore.ErrDenied):
		return contracts.NewError(contracts.CodeInternal,
			msg+" (the blob storage refused the blob module's credentials; check the blob section of the configuration)")
	}
	return fmt.Errorf("blob: %s: %w", op, err)
}
