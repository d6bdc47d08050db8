// Package ocistore is the blobstore.Backend on OCI Object Storage, with
// github.com/oracle/oci-go-sdk/v65.
//
// # Objects
//
// A blob is the object named by its key, with its content type and its
// SHA-256 as user metadata (opc-meta-sha256). Modification times are the
// service's Last-Modified, in whole seconds.
//
// # Put
//
// Content of up to PartSize bytes is read into memory, checked, and put
// with one PutObject (with Content-MD5, which the service checks).
// Anything longer becomes a multipart upload of PartSize parts, read one
// at a time into one buffer. The SHA-256 must be known when the upload is
// created, since that is when metadata is set: it is the expected digest
// when PutOptions.SHA256 gives one, or is computed beforehand by reading
// the rest of the content once (seeking back if the reader can seek, else
// spooling it to a file in Config.SpoolDir). Either way the digest of the
// parts actually uploaded is compared with it before the commit; on a
// mismatch, a wrong size, a reader error, a cancelled context or a failed
// request, the upload is aborted (with a context of its own) and nothing
// becomes visible. The commit is the service's atomic replacement of the
// object: concurrent Puts end with one of them.
//
// # Errors and retries
//
// 404 is blobstore.ErrNotFound, 401 and 403 blobstore.ErrDenied, 416
// blobstore.ErrRange, 429, 5xx, timeouts and connection errors
// blobstore.ErrUnavailable, each wrapped with the service's code and
// message and the opc-request-id. The SDK's own retry policy is replaced
// by a bounded one (Config.MaxAttempts, default 3: retries of 5xx, 429
// and connection errors, 100 ms to 2 s apart), and its circuit breaker is
// off: the caller sees ErrUnavailable and decides. A context that ends is
// reported as its own error, not as ErrUnavailable.
//
// # Listing
//
// ListObjects gives names only, so List asks HeadObject for each blob of
// a page (at most 8 at once) to report its size, digest and content type:
// a page of n blobs costs n+1 requests.
package ocistore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/common/auth"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/zeroci/zeroci/modules/blob/blobstore"
)

// metaSHA256 is the user metadata holding a blob's digest.
const metaSHA256 = "sha256"

// Store keeps blobs in one bucket. Safe for concurrent use.
type Store struct {
	cfg    Config
	client objectstorage.ObjectStorageClient
	// ownHTTP is the Store's own HTTP client (nil if Config.HTTPClient).
	ownHTTP *http.Client
}

var _ blobstore.Backend = (*Store)(nil)

// New makes a Store and checks that the bucket is reachable with its
// credentials (a HeadBucket: ErrDenied, ErrNotFound or ErrUnavailable if
// not). With AuthInstancePrincipal, it first fetches the instance's
// certificate from the instance metadata service.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	provider, err := configurationProvider(cfg)
	if err != nil {
		return nil, err
	}
	client, err := objectstorage.NewObjectStorageClientWithConfigurationProvider(provider)
	if err != nil {
		return nil, fmt.Errorf("ocistore: new client (auth %s): %w", cfg.Auth, err)
	}
	s := &Store{cfg: cfg}
	hc := cfg.HTTPClient
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = cfg.Timeout
		s.ownHTTP = &http.Client{Transport: t}
		hc = s.ownHTTP
	}
	client.HTTPClient = dispatcher{hc}
	client.Configuration.CircuitBreaker = nil
	policy := retryPolicy(cfg.MaxAttempts)
	client.Configuration.RetryPolicy = &policy
	if cfg.Region != "" {
		client.SetRegion(cfg.Region)
	}
	if cfg.Endpoint != "" {
		client.Host = strings.TrimSuffix(cfg.Endpoint, "/")
	}
	s.client = client

	_, err = s.client.HeadBucket(detach(ctx), objectstorage.HeadBucketRequest{
		NamespaceName: &s.cfg.Namespace, BucketName: &s.cfg.Bucket,
	})
	if err != nil {
		s.CloseIdleConnections()
		return nil, s.fail(ctx, "new: head bucket", s.cfg.Bucket, err)
	}
	return s, nil
}

// CloseIdleConnections closes the idle keep-alive connections of the
// Store's own HTTP client (none if Config.HTTPClient was given). The
// Store stays usable.
func (s *Store) CloseIdleConnections() {
	if s.ownHTTP != nil {
		s.ownHTTP.CloseIdleConnections()
	}
}

// configurationProvider builds the SDK's credentials for cfg.Auth.
func configurationProvider(cfg Config) (common.ConfigurationProvider, error) {
	switch cfg.Auth {
	case AuthConfigFile:
		p, err := common.ConfigurationProviderFromFileWithProfile(cfg.ConfigFile, cfg.Profile, "")
		if err != nil {
			return nil, fmt.Errorf("ocistore: auth %s (%s, profile %s): %w", cfg.Auth, cfg.ConfigFile, cfg.Profile, err)
		}
		if _, err := p.KeyID(); err != nil {
			return nil, fmt.Errorf("ocistore: auth %s (%s, profile %s): %w", cfg.Auth, cfg.ConfigFile, cfg.Profile, err)
		}
		if cfg.Region != "" {
			p = regionProvider{ConfigurationProvider: p, region: cfg.Region}
		}
		return p, nil
	case AuthInstancePrincipal:
		var p common.ConfigurationProvider
		var err error
		if cfg.Region != "" {
			p, err = auth.InstancePrincipalConfigurationProviderForRegion(common.StringToRegion(cfg.Region))
		} else {
			p, err = auth.InstancePrincipalConfigurationProvider()
		}
		if err != nil {
			return nil, fmt.Errorf("ocistore: auth %s: %w", cfg.Auth, err)
		}
		return p, nil
	case AuthResourcePrincipal:
		p, err := auth.ResourcePrincipalConfigurationProvider()
		if err != nil {
			return nil, fmt.Errorf("ocistore: auth %s: %w", cfg.Auth, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("ocistore: auth %q: unknown", cfg.Auth)
}

// regionProvider is a config file's credentials with the configured
// region, which the file then need not name.
type regionProvider struct {
	common.ConfigurationProvider
	region string
}

func (p regionProvider) Region() (string, error) { return p.region, nil }

// callerKey holds the caller's context in the context handed to the SDK.
type callerKey struct{}

// detach is the context an SDK call gets: never cancelled, carrying the
// caller's context, which the dispatcher puts on the HTTP request. The
// SDK's retry loop returns as soon as its context ends, while its
// goroutine still runs the request and writes the result it returns (a
// data race, and a request still using a part buffer the Store reuses);
// with detach, the loop returns only when that goroutine is done, which is
// promptly once the caller's context ends and fails the request.
func detach(ctx context.Context) context.Context {
	return context.WithValue(context.WithoutCancel(ctx), callerKey{}, ctx)
}

// dispatcher sends the SDK's requests with the caller's context.
type dispatcher struct{ c *http.Client }

func (d dispatcher) Do(req *http.Request) (*http.Response, error) {
	if ctx, ok := req.Context().Value(callerKey{}).(context.Context); ok {
		req = req.WithContext(ctx)
	}
	return d.c.Do(req)
}

// retryPolicy retries 5xx, 429 and connection errors, but not a request
// whose context ended.
func retryPolicy(attempts int) common.RetryPolicy {
	return common.RetryPolicy{
		MaximumNumberAttempts: uint(attempts),
		ShouldRetryOperation: func(r common.OCIOperationResponse) bool {
			if r.AttemptNumber >= uint(attempts) ||
				errors.Is(r.Error, context.Canceled) || errors.Is(r.Error, context.DeadlineExceeded) {
				return false
			}
			return common.DefaultShouldRetryOperation(r)
		},
		NextDuration: func(r common.OCIOperationResponse) time.Duration {
			d := 100 * time.Millisecond << min(r.AttemptNumber-1, 5)
			d = min(d, 2*time.Second)
			return d/2 + rand.N(d/2+1) // jitter
		},
	}
}

// fail maps an SDK error to the package's errors.
func (s *Store) fail(ctx context.Context, op, key string, err error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ocistore: %s %q: %w", op, key, err)
	}
	var se common.ServiceError
	if errors.As(err, &se) {
		code := se.GetHTTPStatusCode()
		detail := fmt.Sprintf("%d %s: %s (opc-request-id %s)", code, se.GetCode(), se.GetMessage(), se.GetOpcRequestID())
		var sentinel error
		switch {
		case code == http.StatusNotFound:
			sentinel = blobstore.ErrNotFound
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			sentinel = blobstore.ErrDenied
		case code == http.StatusRequestedRangeNotSatisfiable:
			sentinel = blobstore.ErrRange
		case code == http.StatusTooManyRequests || code >= 500:
			sentinel = blobstore.ErrUnavailable
		default:
			return fmt.Errorf("ocistore: %s %q: %s", op, key, detail)
		}
		return fmt.Errorf("ocistore: %s %q: %w: %s", op, key, sentinel, detail)
	}
	if isNetworkError(err) {
		return fmt.Errorf("ocistore: %s %q: %w: %v", op, key, blobstore.ErrUnavailable, err)
	}
	return fmt.Errorf("ocistore: %s %q: %w", op, key, err)
}

// isNetworkError says whether err is the connection's rather than the
// service's or the caller's.
func isNetworkError(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || common.IsNetworkError(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, common.DeadlineExceededByBackoff)
}

// Put implements blobstore.Backend.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts blobstore.PutOptions) (blobstore.Info, error) {
	if err := blobstore.CheckKey(key); err != nil {
		return blobstore.Info{}, fmt.Errorf("ocistore: put: %w", err)
	}
	opts, err := opts.Normalize()
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("ocistore: put %q: %w", key, err)
	}
	if opts.Size > MaxParts*s.cfg.PartSize {
		return blobstore.Info{}, fmt.Errorf("ocistore: put %q: %w: %d bytes, more than %d parts of %d", key, blobstore.ErrInvalidArgument, opts.Size, MaxParts, s.cfg.PartSize)
	}
	initial := int64(64 << 10)
	if opts.Size >= 0 {
		initial = opts.Size
	}
	buf := make([]byte, 0, min(initial, s.cfg.PartSize))
	buf, eof, err := readChunk(ctx, r, buf, s.cfg.PartSize)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("ocistore: put %q: %w", key, err)
	}
	if !eof {
		// Full: is there more?
		var probe [1]byte
		n, err := io.ReadFull(r, probe[:])
		switch {
		case n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
			eof = true
		case err != nil && n == 0:
			return blobstore.Info{}, fmt.Errorf("ocistore: put %q: read content: %w", key, err)
		default:
			return s.putLarge(ctx, key, buf, io.MultiReader(bytes.NewReader(probe[:n]), r), r, opts)
		}
	}
	return s.putSingle(ctx, key, buf, opts)
}

// readChunk reads from r into buf (growing it up to limit) until buf is
// full (eof false) or r ends (eof true). It checks ctx between reads.
func readChunk(ctx context.Context, r io.Reader, buf []byte, limit int64) ([]byte, bool, error) {
	buf = buf[:0]
	for int64(len(buf)) < limit {
		if err := ctx.Err(); err != nil {
			return buf, false, err
		}
		if len(buf) == cap(buf) {
			// Double small buffers; past 1 MiB, go straight to a whole
			// part, so growing never holds much more than one part.
			newCap := max(2*int64(cap(buf)), 64<<10)
			if newCap > 1<<20 {
				newCap = limit
			}
			grown := make([]byte, len(buf), min(newCap, limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, fmt.Errorf("read content: %w", err)
		}
	}
	return buf, false, ctx.Err()
}

// checkContent compares what was read with the options.
func checkContent(key string, size int64, digest string, opts blobstore.PutOptions) error {
	if opts.Size >= 0 && size != opts.Size {
		return fmt.Errorf("ocistore: put %q: %w: content has %d bytes, Size says %d (use -1 when unknown)", key, blobstore.ErrChecksum, size, opts.Size)
	}
	if opts.SHA256 != "" && digest != opts.SHA256 {
		return fmt.Errorf("ocistore: put %q: %w: content has SHA-256 %s, expected %s", key, blobstore.ErrChecksum, digest, opts.SHA256)
	}
	return nil
}

// putSingle puts content held in memory with one request.
func (s *Store) putSingle(ctx context.Context, key string, data []byte, opts blobstore.PutOptions) (blobstore.Info, error) {
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	if err := checkContent(key, int64(len(data)), digest, opts); err != nil {
		return blobstore.Info{}, err
	}
	size := int64(len(data))
	md5 := contentMD5(data)
	body := newPartBody(data)
	defer body.revoke()
	resp, err := s.client.PutObject(detach(ctx), objectstorage.PutObjectRequest{
		NamespaceName: &s.cfg.Namespace,
		BucketName:    &s.cfg.Bucket,
		ObjectName:    &key,
		ContentLength: &size,
		PutObjectBody: body,
		ContentType:   &opts.ContentType,
		ContentMD5:    &md5,
		OpcMeta:       map[string]string{metaSHA256: digest},
	})
	if err != nil {
		return blobstore.Info{}, s.fail(ctx, "put", key, err)
	}
	return blobstore.Info{Key: key, Size: size, SHA256: digest, ContentType: opts.ContentType, ModTime: sdkTime(resp.LastModified)}, nil
}

// putLarge puts content longer than a part: first (a full part) and then
// rest. orig is the caller's reader, which may seek.
func (s *Store) putLarge(ctx context.Context, key string, first []byte, rest, orig io.Reader, opts blobstore.PutOptions) (blobstore.Info, error) {
	digest := opts.SHA256
	if digest == "" {
		h := sha256.New()
		h.Write(first)
		seeker, canSeek := orig.(io.ReadSeeker)
		var pos int64
		if canSeek {
			var err error
			pos, err = seeker.Seek(0, io.SeekCurrent)
			canSeek = err == nil // a pipe is an *os.File too
		}
		if canSeek {
			// Read the rest once for the digest, then go back to the
			// probe byte, which rest replays.
			pos--
			_, err := blobstore.CopyContext(ctx, h, rest)
			if err == nil {
				_, err = seeker.Seek(pos, io.SeekStart)
			}
			if err != nil {
				return blobstore.Info{}, fmt.Errorf("ocistore: put %q: %w", key, err)
			}
			rest = seeker
		} else {
			spool, err := os.CreateTemp(s.cfg.SpoolDir, "zeroci-ocistore-put-*")
			if err != nil {
				return blobstore.Info{}, fmt.Errorf("ocistore: put %q: spool: %w", key, err)
			}
			defer func() {
				spool.Close()
				os.Remove(spool.Name())
			}()
			if _, err := blobstore.CopyContext(ctx, io.MultiWriter(spool, h), rest); err != nil {
				return blobstore.Info{}, fmt.Errorf("ocistore: put %q: spool: %w", key, err)
			}
			if _, err := spool.Seek(0, io.SeekStart); err != nil {
				return blobstore.Info{}, fmt.Errorf("ocistore: put %q: spool: %w", key, err)
			}
			rest = spool
		}
		digest = hex.EncodeToString(h.Sum(nil))
	}
	return s.putMultipart(ctx, key, first, rest, digest, opts)
}

// putMultipart uploads first and the rest of the content in parts,
// checking the content against digest and opts before the commit.
func (s *Store) putMultipart(ctx context.Context, key string, first []byte, rest io.Reader, digest string, opts blobstore.PutOptions) (blobstore.Info, error) {
	created, err := s.client.CreateMultipartUpload(detach(ctx), objectstorage.CreateMultipartUploadRequest{
		NamespaceName: &s.cfg.Namespace,
		BucketName:    &s.cfg.Bucket,
		CreateMultipartUploadDetails: objectstorage.CreateMultipartUploadDetails{
			Object:      &key,
			ContentType: &opts.ContentType,
			Metadata:    map[string]string{"opc-meta-" + metaSHA256: digest},
		},
	})
	if err != nil {
		return blobstore.Info{}, s.fail(ctx, "put: create multipart upload", key, err)
	}
	if created.UploadId == nil {
		return blobstore.Info{}, fmt.Errorf("ocistore: put %q: create multipart upload: no upload id in the answer", key)
	}
	uploadID := *created.UploadId
	abort := func(cause error) error {
		// The caller's context may have ended: the abort gets its own.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		defer cancel()
		_, err := s.client.AbortMultipartUpload(detach(actx), objectstorage.AbortMultipartUploadRequest{
			NamespaceName: &s.cfg.Namespace, BucketName: &s.cfg.Bucket, ObjectName: &key, UploadId: &uploadID,
		})
		if err != nil {
			return errors.Join(cause, s.fail(actx, "put: abort multipart upload "+uploadID, key, err))
		}
		return cause
	}

	h := sha256.New()
	var size int64
	var parts []objectstorage.CommitMultipartUploadPartDetails
	chunk, last := first, false
	for num := 1; len(chunk) > 0; num++ {
		if num > MaxParts {
			return blobstore.Info{}, abort(fmt.Errorf("ocistore: put %q: %w: more than %d parts of %d bytes", key, blobstore.ErrInvalidArgument, MaxParts, s.cfg.PartSize))
		}
		h.Write(chunk)
		size += int64(len(chunk))
		if opts.Size >= 0 && size > opts.Size {
			return blobstore.Info{}, abort(checkContent(key, size, "", opts))
		}
		etag, err := s.uploadPart(ctx, key, uploadID, num, chunk)
		if err != nil {
			return blobstore.Info{}, abort(err)
		}
		parts = append(parts, objectstorage.CommitMultipartUploadPartDetails{PartNum: common.Int(num), Etag: &etag})
		if last {
			break
		}
		chunk, last, err = readChunk(ctx, rest, chunk, s.cfg.PartSize)
		if err != nil {
			return blobstore.Info{}, abort(fmt.Errorf("ocistore: put %q: %w", key, err))
		}
	}
	got := hex.EncodeToString(h.Sum(nil))
	if err := checkContent(key, size, got, opts); err != nil {
		return blobstore.Info{}, abort(err)
	}
	if got != digest {
		return blobstore.Info{}, abort(fmt.Errorf("ocistore: put %q: %w: content changed while it was uploaded (SHA-256 %s, first read as %s)", key, blobstore.ErrChecksum, got, digest))
	}
	if err := ctx.Err(); err != nil {
		return blobstore.Info{}, abort(fmt.Errorf("ocistore: put %q: %w", key, err))
	}
	committed, err := s.client.CommitMultipartUpload(detach(ctx), objectstorage.CommitMultipartUploadRequest{
		NamespaceName:                &s.cfg.Namespace,
		BucketName:                   &s.cfg.Bucket,
		ObjectName:                   &key,
		UploadId:                     &uploadID,
		CommitMultipartUploadDetails: objectstorage.CommitMultipartUploadDetails{PartsToCommit: parts},
	})
	if err != nil {
		return blobstore.Info{}, abort(s.fail(ctx, "put: commit multipart upload", key, err))
	}
	return blobstore.Info{Key: key, Size: size, SHA256: digest, ContentType: opts.ContentType, ModTime: sdkTime(committed.LastModified)}, nil
}

// uploadPart uploads one part. data may be reused once it returns: the
// body handed to the SDK is revoked first (an HTTP transport may read a
// request body after the response arrived).
func (s *Store) uploadPart(ctx context.Context, key, uploadID string, num int, data []byte) (string, error) {
	size := int64(len(data))
	md5 := contentMD5(data)
	body := newPartBody(data)
	defer body.revoke()
	resp, err := s.client.UploadPart(detach(ctx), objectstorage.UploadPartRequest{
		NamespaceName:  &s.cfg.Namespace,
		BucketName:     &s.cfg.Bucket,
		ObjectName:     &key,
		UploadId:       &uploadID,
		UploadPartNum:  &num,
		ContentLength:  &size,
		UploadPartBody: body,
		ContentMD5:     &md5,
	})
	if err != nil {
		return "", s.fail(ctx, fmt.Sprintf("put: upload part %d", num), key, err)
	}
	if resp.ETag == nil {
		return "", fmt.Errorf("ocistore: put %q: upload part %d: no ETag in the answer", key, num)
	}
	return *resp.ETag, nil
}

// Get implements blobstore.Backend. The reader streams from the service
// and fails once ctx ends.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, blobstore.Info, error) {
	if err := blobstore.CheckKey(key); err != nil {
		return nil, blobstore.Info{}, fmt.Errorf("ocistore: get: %w", err)
	}
	if off < 0 {
		return nil, blobstore.Info{}, fmt.Errorf("ocistore: get %q: %w: negative offset %d", key, blobstore.ErrRange, off)
	}
	if length == 0 {
		return s.getEmpty(ctx, key, off)
	}
	req := objectstorage.GetObjectRequest{NamespaceName: &s.cfg.Namespace, BucketName: &s.cfg.Bucket, ObjectName: &key}
	ranged := off > 0 || length > 0
	if ranged {
		rng := fmt.Sprintf("bytes=%d-", off)
		if length > 0 && length <= (1<<62)-off {
			rng += strconv.FormatInt(off+length-1, 10)
		}
		req.Range = &rng
	}
	resp, err := s.client.GetObject(detach(ctx), req)
	if err != nil {
		var se common.ServiceError
		if ranged && errors.As(err, &se) && se.GetHTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
			// Past the end, or at the end (which reads nothing).
			return s.getEmpty(ctx, key, off)
		}
		return nil, blobstore.Info{}, s.fail(ctx, "get", key, err)
	}
	info, err := getInfo(key, resp, ranged)
	if err != nil {
		if resp.Content != nil {
			resp.Content.Close()
		}
		return nil, blobstore.Info{}, err
	}
	var rc io.ReadCloser = &bodyReader{rc: resp.Content, s: s, ctx: ctx, key: key}
	if off == 0 && (length < 0 || length >= info.Size) {
		rc = blobstore.VerifyReader(rc, key, info.Size, info.SHA256)
	}
	return rc, info, nil
}

// getEmpty answers a read of nothing at off: empty if off is within the
// blob or at its end, ErrRange past it.
func (s *Store) getEmpty(ctx context.Context, key string, off int64) (io.ReadCloser, blobstore.Info, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, blobstore.Info{}, err
	}
	if off > info.Size {
		return nil, blobstore.Info{}, fmt.Errorf("ocistore: get %q: %w: offset %d, size %d", key, blobstore.ErrRange, off, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), info, nil
}

// getInfo reads a blob's Info from a GetObject answer.
func getInfo(key string, resp objectstorage.GetObjectResponse, ranged bool) (blobstore.Info, error) {
	info := blobstore.Info{Key: key, SHA256: resp.OpcMeta[metaSHA256], ModTime: sdkTime(resp.LastModified)}
	if resp.ContentType != nil {
		info.ContentType = *resp.ContentType
	}
	status := 0
	if resp.RawResponse != nil {
		status = resp.RawResponse.StatusCode
	}
	switch {
	case status == http.StatusPartialContent && resp.ContentRange != nil:
		// bytes a-b/size
		_, total, ok := strings.Cut(*resp.ContentRange, "/")
		size, err := strconv.ParseInt(total, 10, 64)
		if !ok || err != nil {
			return info, fmt.Errorf("ocistore: get %q: bad Content-Range %q", key, *resp.ContentRange)
		}
		info.Size = size
	case status == http.StatusOK && !ranged && resp.ContentLength != nil:
		info.Size = *resp.ContentLength
	default:
		return info, fmt.Errorf("ocistore: get %q: unexpected answer %d (ranged %v)", key, status, ranged)
	}
	return info, nil
}

// bodyReader maps the errors of an object's body.
type bodyReader struct {
	rc  io.ReadCloser
	s   *Store
	ctx context.Context
	key string
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = b.s.fail(b.ctx, "get: read", b.key, err)
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.rc.Close() }

// Stat implements blobstore.Backend.
func (s *Store) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	if err := blobstore.CheckKey(key); err != nil {
		return blobstore.Info{}, fmt.Errorf("ocistore: stat: %w", err)
	}
	resp, err := s.client.HeadObject(detach(ctx), objectstorage.HeadObjectRequest{
		NamespaceName: &s.cfg.Namespace, BucketName: &s.cfg.Bucket, ObjectName: &key,
	})
	if err != nil {
		return blobstore.Info{}, s.fail(ctx, "stat", key, err)
	}
	info := blobstore.Info{Key: key, SHA256: resp.OpcMeta[metaSHA256], ModTime: sdkTime(resp.LastModified)}
	if resp.ContentLength != nil {
		info.Size = *resp.ContentLength
	}
	if resp.ContentType != nil {
		info.ContentType = *resp.ContentType
	}
	return info, nil
}

// Delete implements blobstore.Backend.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blobstore.CheckKey(key); err != nil {
		return fmt.Errorf("ocistore: delete: %w", err)
	}
	_, err := s.client.DeleteObject(detach(ctx), objectstorage.DeleteObjectRequest{
		NamespaceName: &s.cfg.Namespace, BucketName: &s.cfg.Bucket, ObjectName: &key,
	})
	if err != nil {
		err = s.fail(ctx, "delete", key, err)
		if errors.Is(err, blobstore.ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// List implements blobstore.Backend. Objects whose names are not valid
// keys (put there by something else) are left out.
func (s *Store) List(ctx context.Context, prefix, pageToken string, limit int) ([]blobstore.Info, string, error) {
	if err := blobstore.CheckPrefix(prefix); err != nil {
		return nil, "", fmt.Errorf("ocistore: list: %w", err)
	}
	req := objectstorage.ListObjectsRequest{
		NamespaceName: &s.cfg.Namespace,
		BucketName:    &s.cfg.Bucket,
		Limit:         common.Int(blobstore.ListLimit(limit)),
		Fields:        common.String("name"),
	}
	if prefix != "" {
		req.Prefix = &prefix
	}
	if pageToken != "" {
		// Any name may come back as a token (ListObjects' nextStartWith),
		// and any goes as the start parameter: just check it belongs here.
		if len(pageToken) > blobstore.MaxKeyLen || !utf8.ValidString(pageToken) || !strings.HasPrefix(pageToken, prefix) {
			return nil, "", fmt.Errorf("ocistore: list %q: %w: page token %q", prefix, blobstore.ErrInvalidArgument, pageToken)
		}
		req.Start = &pageToken
	}
	resp, err := s.client.ListObjects(detach(ctx), req)
	if err != nil {
		return nil, "", s.fail(ctx, "list", prefix, err)
	}
	var names []string
	for _, o := range resp.Objects {
		if o.Name != nil && blobstore.CheckKey(*o.Name) == nil && strings.HasPrefix(*o.Name, prefix) {
			names = append(names, *o.Name)
		}
	}
	infos, err := s.statAll(ctx, names)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if resp.NextStartWith != nil {
		next = *resp.NextStartWith
	}
	return infos, next, nil
}

// statAll stats names (a few at once), in order, leaving out those
// deleted meanwhile.
func (s *Store) statAll(ctx context.Context, names []string) ([]blobstore.Info, error) {
	infos := make([]blobstore.Info, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			infos[i], errs[i] = s.Stat(ctx, name)
		}()
	}
	wg.Wait()
	out := infos[:0]
	for i, err := range errs {
		if errors.Is(err, blobstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ocistore: list: %w", err)
		}
		out = append(out, infos[i])
	}
	return out, nil
}

func sdkTime(t *common.SDKTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time.UTC()
}
