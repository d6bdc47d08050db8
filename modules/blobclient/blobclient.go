// Package blobclient is how modules and commands use the blob module:
// Put uploads a stream, Get and GetRange download one, Stat, List and
// Delete are single requests.
//
// Transfers are pipelined with bounded memory: Put keeps up to
// Transfer.Window chunks in flight (a credit window: a chunk buffer is
// reused once the store acknowledged it), Get keeps up to Transfer.Window
// chunks requested ahead of the writer. So a transfer holds about
// Window × chunk size of data (plus its encodings on the wire), whatever
// the blob's size.
//
// Every function is safe for concurrent use. Errors from the blob module
// are *contracts.Error values (contracts.CodeOf gives their code).
package blobclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
)

// Defaults of Transfer.
const (
	// DefaultWindow is how many chunks a transfer keeps in flight.
	DefaultWindow = 4
	// DefaultReadChunk is the size of one get request (the blob module's
	// default chunk size: see blob.DefaultChunkSize for why).
	DefaultReadChunk = 512 << 10
)

// Tuning.
const (
	// chunkRetries bounds how often Put resends a chunk the store refused
	// because it arrived before the chunks ahead of it.
	chunkRetries = 3
	// abortTimeout bounds the put_abort sent after a failed Put.
	abortTimeout = 10 * time.Second
)

var (
	// ErrChanged: the blob was replaced while it was being read.
	ErrChanged = errors.New("blobclient: blob changed during the read")
	// ErrChecksum: the bytes read do not match the blob's SHA-256.
	ErrChecksum = errors.New("blobclient: checksum mismatch")
	// ErrRange: GetRange asked for bytes past the end of the blob.
	ErrRange = errors.New("blobclient: range past the end of the blob")
	// ErrProtocol: the store answered something it should not have.
	ErrProtocol = errors.New("blobclient: unexpected answer from the blob store")
)

// Transfer tunes Put, Get and GetRange. The zero value uses the defaults;
// the package functions use the zero value.
type Transfer struct {
	// Window is how many chunks are in flight at once (default
	// DefaultWindow).
	Window int
	// ReadChunk is the size of one get request (default DefaultReadChunk,
	// at most contracts.MaxBlobChunk). Put uses the chunk size the store
	// asks for.
	ReadChunk int
}

func (t Transfer) window() int {
	if t.Window <= 0 {
		return DefaultWindow
	}
	return t.Window
}

func (t Transfer) readChunk() int64 {
	if t.ReadChunk <= 0 {
		return DefaultReadChunk
	}
	return int64(min(t.ReadChunk, contracts.MaxBlobChunk))
}

// Put stores r's content under key with the default Transfer.
func Put(ctx context.Context, rq transport.Requester, key, contentType string, r io.Reader) (contracts.BlobInfo, error) {
	return Transfer{}.Put(ctx, rq, key, contentType, r)
}

// Get writes the blob under key to w with the default Transfer.
func Get(ctx context.Context, rq transport.Requester, key string, w io.Writer) (contracts.BlobInfo, error) {
	return Transfer{}.Get(ctx, rq, key, w)
}

// GetRange writes length bytes of the blob under key from off to w with
// the default Transfer.
func GetRange(ctx context.Context, rq transport.Requester, key string, off, length int64, w io.Writer) error {
	return Transfer{}.GetRange(ctx, rq, key, off, length, w)
}

// Put stores r's content under key, replacing any blob there once it is
// complete, and returns its info. It reads r in chunks of the size the
// store asks for, keeps up to Window of them in flight, hashes the content
// as it goes and commits size and SHA-256 at the end, so the store
// refuses anything that did not arrive intact. On any failure, r's
// included, and when ctx ends, it aborts the upload and nothing is
// stored (a failure during the commit itself may leave the blob stored:
// Stat tells). Put reads r to its end; it does not close it.
func (t Transfer) Put(ctx context.Context, rq transport.Requester, key, contentType string, r io.Reader) (contracts.BlobInfo, error) {
	var zero contracts.BlobInfo
	up, err := rpc.Call[contracts.Upload](ctx, rq, contracts.PutBegin{Key: key, ContentType: contentType})
	if err != nil {
		return zero, fmt.Errorf("blobclient: put %s: begin: %w", key, err)
	}
	size, sum, err := t.send(ctx, rq, up, r)
	if err == nil {
		var info contracts.BlobInfo
		info, err = rpc.Call[contracts.BlobInfo](ctx, rq,
			contracts.PutCommit{UploadID: up.UploadID, Size: size, SHA256: sum}, transport.Idempotent())
		switch {
		case err != nil:
			err = fmt.Errorf("commit: %w", err)
		case info.Key != key || info.Size != size || info.SHA256 != sum:
			return zero, fmt.Errorf("%w: put %s: committed %s, %d bytes, sha256 %s; sent %d bytes, sha256 %s",
				ErrProtocol, key, info.Key, info.Size, info.SHA256, size, sum)
		default:
			return info, nil
		}
	}
	abort(ctx, rq, up.UploadID)
	return zero, fmt.Errorf("blobclient: put %s: %w", key, err)
}

// abort drops an upload after a failure, even when ctx has ended. Its own
// failure is not reported: the store drops idle uploads anyway.
func abort(ctx context.Context, rq transport.Requester, id contracts.ID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, _ = rpc.Call[contracts.OK](ctx, rq, contracts.PutAbort{UploadID: id}, transport.Idempotent())
}

// send reads r and sends it as chunks, up to Window at once. It returns
// the size and SHA-256 of what it sent once every chunk is stored.
func (t Transfer) send(ctx context.Context, rq transport.Requester, up contracts.Upload, r io.Reader) (int64, string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()

	// free holds the window's credits: a nil credit is a buffer not yet
	// allocated, so a small blob allocates one.
	window := t.window()
	free := make(chan []byte, window)
	for range window {
		free <- nil
	}
	st := &stored{progress: make(chan struct{})}
	h := sha256.New()
	var off int64
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			wg.Wait()
			return 0, "", context.Cause(ctx)
		}
		if buf == nil {
			buf = make([]byte, up.ChunkSize)
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if off+int64(n) > contracts.MaxBlobSize {
				cancel(contracts.NewError(contracts.CodeTooLarge,
					fmt.Sprintf("more than %d bytes, the largest blob", int64(contracts.MaxBlobSize))))
				wg.Wait()
				return 0, "", context.Cause(ctx)
			}
			h.Write(buf[:n])
			chunk := contracts.PutChunk{UploadID: up.UploadID, Offset: off, Data: buf[:n], SHA256: contracts.BlobSHA256(buf[:n])}
			off += int64(n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sendChunk(ctx, rq, chunk, st); err != nil {
					cancel(err)
					return
				}
				free <- buf
			}()
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			wg.Wait()
			if err := context.Cause(ctx); err != nil {
				return 0, "", err
			}
			return off, hex.EncodeToString(h.Sum(nil)), nil
		case rerr != nil:
			cancel(fmt.Errorf("read: %w", rerr))
			wg.Wait()
			return 0, "", context.Cause(ctx)
		}
	}
}

// stored tracks how many bytes the store holds without gaps, as its
// replies say.
type stored struct {
	mu       sync.Mutex
	size     int64
	progress chan struct{} // closed and replaced when size grows
}

func (s *stored) advance(size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size > s.size {
		s.size = size
		close(s.progress)
		s.progress = make(chan struct{})
	}
}

// wait returns once the store holds off bytes.
func (s *stored) wait(ctx context.Context, off int64) error {
	for {
		s.mu.Lock()
		size, progress := s.size, s.progress
		s.mu.Unlock()
		if size >= off {
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// sendChunk sends one chunk. A chunk that overtook the ones before it by
// more than the store waits for is sent again once they are stored.
func sendChunk(ctx context.Context, rq transport.Requester, chunk contracts.PutChunk, st *stored) error {
	end := chunk.Offset + int64(len(chunk.Data))
	for attempt := 0; ; attempt++ {
		rep, err := rpc.Call[contracts.Received](ctx, rq, chunk, transport.Idempotent())
		if err == nil {
			if rep.Size < end {
				return fmt.Errorf("%w: chunk at %d of %d bytes: store holds %d", ErrProtocol, chunk.Offset, len(chunk.Data), rep.Size)
			}
			st.advance(rep.Size)
			return nil
		}
		if contracts.CodeOf(err) != contracts.CodeConflict || attempt == chunkRetries || ctx.Err() != nil {
			return fmt.Errorf("chunk at %d: %w", chunk.Offset, err)
		}
		if err := st.wait(ctx, chunk.Offset); err != nil {
			return err
		}
	}
}

// Get writes the blob under key to w and returns its info. It checks that
// the blob stays the same from the first chunk to the last (else
// ErrChanged) and that the bytes match its SHA-256 (else ErrChecksum).
// What was written to w before an error is not taken back.
func (t Transfer) Get(ctx context.Context, rq transport.Requester, key string, w io.Writer) (contracts.BlobInfo, error) {
	info, err := Stat(ctx, rq, key)
	if err != nil {
		return info, err
	}
	h := sha256.New()
	if err := t.fetch(ctx, rq, key, 0, info.Size, info.Size, info.SHA256, io.MultiWriter(w, h)); err != nil {
		return info, fmt.Errorf("blobclient: get %s: %w", key, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != info.SHA256 {
		return info, fmt.Errorf("%w: get %s: read sha256 %s, the blob's is %s", ErrChecksum, key, sum, info.SHA256)
	}
	return info, nil
}

// GetRange writes length bytes of the blob under key, from off, to w; a
// negative length reads to the end. It fails with ErrRange, before
// writing anything, if the blob ends before off+length, and with an
// invalid_argument *contracts.Error if off is past its end. It checks that
// the blob stays the same from the first chunk to the last (else
// ErrChanged); each chunk's bytes are checked against its digest.
func (t Transfer) GetRange(ctx context.Context, rq transport.Requester, key string, off, length int64, w io.Writer) error {
	if off < 0 {
		return fmt.Errorf("blobclient: get %s: negative offset %d", key, off)
	}
	first := t.readChunk()
	if length >= 0 {
		// An empty range still asks for one byte, to check off.
		first = max(min(first, length), 1)
	}
	c, err := rpc.Call[contracts.BlobChunk](ctx, rq, contracts.GetBlob{Key: key, Offset: off, Length: int(first)}, transport.Idempotent())
	if err != nil {
		return fmt.Errorf("blobclient: get %s at %d: %w", key, off, err)
	}
	end := c.Size
	if length >= 0 {
		if off+length > c.Size {
			return fmt.Errorf("%w: get %s: %d bytes at %d, the blob has %d", ErrRange, key, length, off, c.Size)
		}
		end = off + length
	}
	if c.Offset != off || int64(len(c.Data)) != min(first, c.Size-off) {
		return fmt.Errorf("%w: get %s: asked %d bytes at %d, got %d at %d", ErrProtocol, key, first, off, len(c.Data), c.Offset)
	}
	data := c.Data[:min(int64(len(c.Data)), end-off)]
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("blobclient: get %s: write: %w", key, err)
	}
	if err := t.fetch(ctx, rq, key, off+int64(len(data)), end, c.Size, c.BlobSHA256, w); err != nil {
		return fmt.Errorf("blobclient: get %s: %w", key, err)
	}
	return nil
}

// fetched is one chunk's outcome.
type fetched struct {
	data []byte
	err  error
}

// fetch writes bytes [from, to) of the blob, whose size and digest are
// known, to w, with up to Window get requests in flight.
func (t Transfer) fetch(ctx context.Context, rq transport.Requester, key string, from, to, size int64, sum string, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	chunk := t.readChunk()
	next := from
	launch := func() chan fetched {
		out := make(chan fetched, 1)
		off, n := next, min(chunk, to-next)
		next += n
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, err := fetchChunk(ctx, rq, key, off, n, size, sum)
			out <- fetched{data: data, err: err}
		}()
		return out
	}
	var queue []chan fetched
	for next < to && len(queue) < t.window() {
		queue = append(queue, launch())
	}
	for len(queue) > 0 {
		var f fetched
		select {
		case f = <-queue[0]:
		case <-ctx.Done():
			return ctx.Err()
		}
		queue = queue[1:]
		if f.err != nil {
			return f.err
		}
		if _, err := w.Write(f.data); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if next < to {
			queue = append(queue, launch())
		}
	}
	return nil
}

// fetchChunk reads n bytes at off and checks the blob is still the one
// of the given size and digest.
func fetchChunk(ctx context.Context, rq transport.Requester, key string, off, n, size int64, sum string) ([]byte, error) {
	c, err := rpc.Call[contracts.BlobChunk](ctx, rq, contracts.GetBlob{Key: key, Offset: off, Length: int(n)}, transport.Idempotent())
	switch {
	case err != nil:
		if contracts.CodeOf(err) == contracts.CodeNotFound {
			return nil, fmt.Errorf("%w: at %d: %w", ErrChanged, off, err)
		}
		return nil, fmt.Errorf("at %d: %w", off, err)
	case c.Size != size || c.BlobSHA256 != sum:
		return nil, fmt.Errorf("%w: at %d: now %d bytes, sha256 %s; was %d bytes, sha256 %s",
			ErrChanged, off, c.Size, c.BlobSHA256, size, sum)
	case c.Offset != off || int64(len(c.Data)) != n:
		return nil, fmt.Errorf("%w: asked %d bytes at %d, got %d at %d", ErrProtocol, n, off, len(c.Data), c.Offset)
	}
	return c.Data, nil
}

// Stat returns the info of the blob under key.
func Stat(ctx context.Context, rq transport.Requester, key string) (contracts.BlobInfo, error) {
	info, err := rpc.Call[contracts.BlobInfo](ctx, rq, contracts.StatBlob{Key: key}, transport.Idempotent())
	if err != nil {
		return info, fmt.Errorf("blobclient: stat %s: %w", key, err)
	}
	return info, nil
}

// List returns one page of the blobs whose keys start with prefix, in key
// order, after pageToken (the previous page's NextPageToken, "" for the
// first); limit 0 means contracts.DefaultListLimit.
func List(ctx context.Context, rq transport.Requester, prefix, pageToken string, limit int) (contracts.BlobListing, error) {
	l, err := rpc.Call[contracts.BlobListing](ctx, rq,
		contracts.ListBlobs{Prefix: prefix, PageToken: pageToken, Limit: limit}, transport.Idempotent())
	if err != nil {
		return l, fmt.Errorf("blobclient: list %s: %w", prefix, err)
	}
	return l, nil
}

// Delete removes the blob under key; a missing key is not an error.
func Delete(ctx context.Context, rq transport.Requester, key string) error {
	if _, err := rpc.Call[contracts.OK](ctx, rq, contracts.DeleteBlob{Key: key}, transport.Idempotent()); err != nil {
		return fmt.Errorf("blobclient: delete %s: %w", key, err)
	}
	return nil
}
