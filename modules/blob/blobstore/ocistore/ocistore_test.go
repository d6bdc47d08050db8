package ocistore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/modules/blob/blobstore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/blobstoretest"
	"github.com/zeroci/zeroci/modules/blob/blobstore/ocistore"
	"github.com/zeroci/zeroci/modules/blob/blobstore/ocistore/ocitest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testNS     = "testns"
	testBucket = "zeroci"
	partSize   = 1 << 20
)

// env is a store on a fake server.
type env struct {
	srv   *ocitest.Server
	store *ocistore.Store
	cfg   ocistore.Config
}

// newEnv starts a server trusting creds and a store (PartSize 1 MiB, no
// retries unless mod changes it) on it.
func newEnv(t *testing.T, creds ocitest.Credentials, mod func(*ocistore.Config)) env {
	t.Helper()
	srv := ocitest.NewServer(t, testNS, testBucket)
	srv.Trust(creds)
	cfg := baseConfig(t, srv, creds)
	if mod != nil {
		mod(&cfg)
	}
	s, err := ocistore.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.CloseIdleConnections)
	return env{srv: srv, store: s, cfg: cfg}
}

// baseConfig is a store's config for srv; the HTTP client's idle
// connections are closed at the test's end (before the server stops).
func baseConfig(t *testing.T, srv *ocitest.Server, creds ocitest.Credentials) ocistore.Config {
	t.Helper()
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(client.CloseIdleConnections)
	return ocistore.Config{
		Namespace:   testNS,
		Bucket:      testBucket,
		Auth:        ocistore.AuthConfigFile,
		ConfigFile:  creds.ConfigFile,
		Profile:     creds.Profile,
		Endpoint:    srv.URL(),
		HTTPClient:  client,
		PartSize:    partSize,
		MaxAttempts: 1,
		SpoolDir:    t.TempDir(),
	}
}

func TestConformance(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	blobstoretest.Run(t, func(t *testing.T) blobstoretest.Subject {
		e := newEnv(t, creds, func(c *ocistore.Config) { c.MaxAttempts = 3 })
		return blobstoretest.Subject{
			Backend: e.store,
			Corrupt: e.srv.Corrupt,
			Leftovers: func() ([]string, error) {
				left := e.srv.PendingUploads()
				spooled, err := os.ReadDir(e.cfg.SpoolDir)
				for _, f := range spooled {
					left = append(left, "spool: "+f.Name())
				}
				return left, err
			},
		}
	})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func hexSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// plain hides Seek and WriteTo.
type plain struct{ r io.Reader }

func (p plain) Read(b []byte) (int, error) { return p.r.Read(b) }

func readAll(t *testing.T, s *ocistore.Store, key string) ([]byte, error) {
	t.Helper()
	rc, _, err := s.Get(ctxFor(t), key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// count counts the requests of a method and route.
func count(reqs []ocitest.Request, method string, route ocitest.Route) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && r.Route == route {
			n++
		}
	}
	return n
}

// TestWrongKeyDenied: a request signed with another key than the one the
// server holds for the key id, or with an unknown key id, is refused with
// 401, which is ErrDenied.
func TestWrongKeyDenied(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	other := ocitest.NewCredentials(t)
	srv := ocitest.NewServer(t, testNS, testBucket)
	srv.Trust(creds)
	for name, c := range map[string]ocitest.Credentials{
		"same key id, other key":         creds.WithConfig(t, creds.Region, other.KeyFile),
		"unknown key id":                 other,
		"profile DEFAULT (unknown user)": func() ocitest.Credentials { c := creds; c.Profile = ""; return c }(),
	} {
		_, err := ocistore.New(ctxFor(t), baseConfig(t, srv, c))
		if !errors.Is(err, blobstore.ErrDenied) {
			t.Fatalf("%s: New: %v; want ErrDenied", name, err)
		}
		if !strings.Contains(err.Error(), "401") { // a HEAD answer has no body with the code
			t.Fatalf("%s: New: %v; want the status", name, err)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || slices.ContainsFunc(reqs, func(r ocitest.Request) bool { return r.Status != http.StatusUnauthorized }) {
		t.Fatalf("requests %+v; want three answered 401", reqs)
	}
	// The right key works, and the server saw it.
	if _, err := ocistore.New(ctxFor(t), baseConfig(t, srv, creds)); err != nil {
		t.Fatalf("New with the trusted key: %v", err)
	}
}

// TestFaultsMapToErrors: what the service answers becomes the documented
// sentinel, for every operation.
func TestFaultsMapToErrors(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, nil)
	if _, err := e.store.Put(ctxFor(t), "k", strings.NewReader("v"), blobstore.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	ops := map[string]struct {
		method string
		route  ocitest.Route
		call   func() error
	}{
		"stat": {http.MethodHead, ocitest.RouteObject, func() error { _, err := e.store.Stat(ctxFor(t), "k"); return err }},
		"get": {http.MethodGet, ocitest.RouteObject, func() error {
			_, err := readAll(t, e.store, "k")
			return err
		}},
		"put": {http.MethodPut, ocitest.RouteObject, func() error {
			_, err := e.store.Put(ctxFor(t), "k2", strings.NewReader("v"), blobstore.PutOptions{Size: 1})
			return err
		}},
		"list":   {http.MethodGet, ocitest.RouteList, func() error { _, _, err := e.store.List(ctxFor(t), "", "", 0); return err }},
		"delete": {http.MethodDelete, ocitest.RouteObject, func() error { return e.store.Delete(ctxFor(t), "k") }},
	}
	for _, kind := range []struct {
		kind ocitest.FaultKind
		want error
	}{
		{ocitest.Unavailable, blobstore.ErrUnavailable},
		{ocitest.Throttle, blobstore.ErrUnavailable},
		{ocitest.NotFound, blobstore.ErrNotFound},
	} {
		for name, op := range ops {
			e.srv.Inject(ocitest.Fault{Kind: kind.kind, Method: op.method, Route: op.route})
			err := op.call()
			want := kind.want
			if name == "delete" && kind.kind == ocitest.NotFound {
				want = nil // deleting a missing blob is fine
			}
			if want == nil && err != nil || want != nil && !errors.Is(err, want) {
				t.Fatalf("%s with fault %d: %v; want %v", name, kind.kind, err, want)
			}
			if err != nil && op.method != http.MethodHead && !strings.Contains(err.Error(), "injected fault") {
				t.Fatalf("%s: %v; want the service's message", name, err)
			}
		}
	}
	if got := e.srv.Objects(); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("objects after failed calls: %q; want [k]", got)
	}
}

// TestHangIsUnavailable: a service that does not answer within Timeout
// is ErrUnavailable, with the store's own HTTP client.
func TestHangIsUnavailable(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, func(c *ocistore.Config) {
		c.HTTPClient = nil
		c.Timeout = 300 * time.Millisecond
	})
	e.srv.Inject(ocitest.Fault{Kind: ocitest.Hang, Method: http.MethodHead, Route: ocitest.RouteObject})
	start := time.Now()
	_, err := e.store.Stat(ctxFor(t), "k")
	if !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("Stat of a hanging service: %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Stat took %v with a timeout of 300ms", d)
	}
	// The service answers again.
	if _, err := e.store.Stat(ctxFor(t), "k"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat afterwards: %v; want ErrNotFound", err)
	}
}

// TestContextEndIsNotUnavailable: a caller's deadline is reported as
// such.
func TestContextEndIsNotUnavailable(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, nil)
	e.srv.Inject(ocitest.Fault{Kind: ocitest.Hang, Method: http.MethodHead})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.store.Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("Stat with a short deadline: %v; want context.DeadlineExceeded only", err)
	}
}

// TestRetriesAreBounded: 5xx is retried up to MaxAttempts times.
func TestRetriesAreBounded(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, func(c *ocistore.Config) { c.MaxAttempts = 3 })
	if _, err := e.store.Put(ctxFor(t), "k", strings.NewReader("v"), blobstore.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	e.srv.Inject(ocitest.Fault{Kind: ocitest.Unavailable, Method: http.MethodHead, Times: 2})
	if _, err := e.store.Stat(ctxFor(t), "k"); err != nil {
		t.Fatalf("Stat with two failures and three attempts: %v", err)
	}
	if n := count(e.srv.Requests(), http.MethodHead, ocitest.RouteObject); n != 3 {
		t.Fatalf("%d HEAD requests; want 3", n)
	}
	e.srv.Inject(ocitest.Fault{Kind: ocitest.Unavailable, Method: http.MethodHead, Times: 5})
	if _, err := e.store.Stat(ctxFor(t), "k"); !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("Stat with five failures: %v; want ErrUnavailable", err)
	}
	if n := count(e.srv.Requests(), http.MethodHead, ocitest.RouteObject); n != 6 {
		t.Fatalf("%d HEAD requests; want 6 (3 + 3)", n)
	}
	// A part upload is retried too (its body is rewound).
	content := random(1, 3*partSize+100)
	e.srv.Inject(ocitest.Fault{Kind: ocitest.Unavailable, Method: http.MethodPut, Route: ocitest.RouteUpload, Skip: 1})
	if _, err := e.store.Put(ctxFor(t), "big", plain{bytes.NewReader(content)}, blobstore.PutOptions{Size: -1, SHA256: hexSHA(content)}); err != nil {
		t.Fatalf("Put with a failing part and retries: %v", err)
	}
	if got, err := readAll(t, e.store, "big"); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
}

// TestFailedMultipartIsAborted: whichever request of a multipart upload
// fails, the upload is aborted, nothing new is visible and the old blob
// stays.
func TestFailedMultipartIsAborted(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	content := random(2, 3*partSize+100)
	for _, c := range []struct {
		name  string
		fault ocitest.Fault
		want  error
		abort bool // an upload existed, so an abort is expected
	}{
		{"create fails", ocitest.Fault{Kind: ocitest.Unavailable, Method: http.MethodPost, Route: ocitest.RouteUploads}, blobstore.ErrUnavailable, false},
		{"first part fails", ocitest.Fault{Kind: ocitest.Unavailable, Method: http.MethodPut, Route: ocitest.RouteUpload}, blobstore.ErrUnavailable, true},
		{"third part fails", ocitest.Fault{Kind: ocitest.Unavailable, Method: http.MethodPut, Route: ocitest.RouteUpload, Skip: 2}, blobstore.ErrUnavailable, true},
		{"part throttled", ocitest.Fault{Kind: ocitest.Throttle, Method: http.MethodPut, Route: ocitest.RouteUpload, Skip: 1}, blobstore.ErrUnavailable, true},
		{"part hangs", ocitest.Fault{Kind: ocitest.Hang, Method: http.MethodPut, Route: ocitest.RouteUpload, Skip: 1}, blobstore.ErrUnavailable, true},
		{"commit fails", ocitest.Fault{Kind: ocitest.Unavailable, Method: http.MethodPost, Route: ocitest.RouteUpload}, blobstore.ErrUnavailable, true},
		{"commit not found", ocitest.Fault{Kind: ocitest.NotFound, Method: http.MethodPost, Route: ocitest.RouteUpload}, blobstore.ErrNotFound, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, creds, func(cfg *ocistore.Config) {
				cfg.HTTPClient = nil
				cfg.Timeout = time.Second
			})
			old, err := e.store.Put(ctxFor(t), "obj", strings.NewReader("old"), blobstore.PutOptions{Size: 3})
			if err != nil {
				t.Fatal(err)
			}
			e.srv.Inject(c.fault)
			_, err = e.store.Put(ctxFor(t), "obj", plain{bytes.NewReader(content)}, blobstore.PutOptions{Size: int64(len(content)), SHA256: hexSHA(content)})
			if !errors.Is(err, c.want) {
				t.Fatalf("Put: %v; want %v", err, c.want)
			}
			if left := e.srv.PendingUploads(); len(left) != 0 {
				t.Fatalf("uploads left: %q", left)
			}
			if n := count(e.srv.Requests(), http.MethodDelete, ocitest.RouteUpload); c.abort != (n == 1) {
				t.Fatalf("%d aborts; want an abort: %v", n, c.abort)
			}
			got, err := e.store.Stat(ctxFor(t), "obj")
			if err != nil || got != old {
				t.Fatalf("Stat after the failed Put: %+v, %v; want %+v", got, err, old)
			}
			e.store.CloseIdleConnections()
		})
	}
}

// TestWrongDigestNeverCommits: a multipart Put whose content does not
// match the expected digest is aborted before the commit.
func TestWrongDigestNeverCommits(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, nil)
	content := random(3, 2*partSize+1)
	_, err := e.store.Put(ctxFor(t), "obj", plain{bytes.NewReader(content)}, blobstore.PutOptions{Size: -1, SHA256: hexSHA(content[1:])})
	if !errors.Is(err, blobstore.ErrChecksum) {
		t.Fatalf("Put with a wrong digest: %v; want ErrChecksum", err)
	}
	reqs := e.srv.Requests()
	if count(reqs, http.MethodPut, ocitest.RouteUpload) != 3 || count(reqs, http.MethodPost, ocitest.RouteUpload) != 0 || count(reqs, http.MethodDelete, ocitest.RouteUpload) != 1 {
		t.Fatalf("requests %+v; want 3 parts, no commit, an abort", reqs)
	}
	if objs := e.srv.Objects(); len(objs) != 0 {
		t.Fatalf("objects %q after a failed Put", objs)
	}
}

// changingSeeker is content that changes after it was read once and
// rewound: like a file rewritten while it is uploaded.
type changingSeeker struct {
	data  []byte
	off   int64
	seeks int
}

func (c *changingSeeker) Read(p []byte) (int, error) {
	if c.off >= int64(len(c.data)) {
		return 0, io.EOF
	}
	n := copy(p, c.data[c.off:])
	c.off += int64(n)
	return n, nil
}

func (c *changingSeeker) Seek(off int64, whence int) (int64, error) {
	c.seeks++
	if c.seeks == 2 { // the rewind after the digest pass
		c.data[len(c.data)-1] ^= 1
	}
	switch whence {
	case io.SeekStart:
		c.off = off
	case io.SeekCurrent:
		c.off += off
	default:
		return 0, errors.New("unsupported")
	}
	return c.off, nil
}

// TestPutPaths: large content of unknown digest is hashed by seeking or
// by spooling; a file that changes meanwhile is caught before the commit.
func TestPutPaths(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, nil)
	content := random(4, 2*partSize+77)
	f, err := os.Create(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{
		"file (seeks)":    f,
		"stream (spools)": plain{bytes.NewReader(content)},
		"seeker in the middle": func() io.Reader {
			r := bytes.NewReader(append([]byte("skipped"), content...))
			_, _ = r.Seek(int64(len("skipped")), io.SeekStart)
			return r
		}(),
	} {
		key := "paths/" + name
		info, err := e.store.Put(ctxFor(t), key, r, blobstore.PutOptions{Size: -1})
		if err != nil {
			t.Fatalf("%s: Put: %v", name, err)
		}
		if info.SHA256 != hexSHA(content) || info.Size != int64(len(content)) {
			t.Fatalf("%s: Info %+v", name, info)
		}
		if got, err := readAll(t, e.store, key); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%s: read back %d bytes, %v", name, len(got), err)
		}
		if spooled, _ := os.ReadDir(e.cfg.SpoolDir); len(spooled) != 0 {
			t.Fatalf("%s: spool files left: %v", name, spooled)
		}
	}
	// A pipe is an *os.File that cannot seek: it is spooled.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	written := make(chan error, 1)
	go func() {
		_, err := pw.Write(content)
		pw.Close()
		written <- err
	}()
	if _, err := e.store.Put(ctxFor(t), "paths/pipe", pr, blobstore.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put from a pipe: %v", err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, e.store, "paths/pipe"); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("pipe: read back %d bytes, %v", len(got), err)
	}

	_, err = e.store.Put(ctxFor(t), "paths/changing", &changingSeeker{data: bytes.Clone(content)}, blobstore.PutOptions{Size: -1})
	if !errors.Is(err, blobstore.ErrChecksum) {
		t.Fatalf("Put of content changing during the upload: %v; want ErrChecksum", err)
	}
	if _, err := e.store.Stat(ctxFor(t), "paths/changing"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat after: %v; want ErrNotFound", err)
	}
	if left := e.srv.PendingUploads(); len(left) != 0 {
		t.Fatalf("uploads left: %q", left)
	}
}

// TestForeignObjects: objects put by something else, whose names are
// not valid keys or which lack the digest metadata, do not break List or
// Get.
func TestForeignObjects(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, nil)
	if _, err := e.store.Put(ctxFor(t), "a/ok", strings.NewReader("ok"), blobstore.PutOptions{Size: 2}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a//bad", "a/../x", "a/z/"} {
		if err := e.srv.Put(name, []byte("foreign"), "text/plain", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.srv.Put("a/nometa", []byte("no digest"), "text/plain", nil); err != nil {
		t.Fatal(err)
	}
	var keys []string
	token := ""
	for {
		infos, next, err := e.store.List(ctxFor(t), "a/", token, 1)
		if err != nil {
			t.Fatalf("List(a/, %q): %v", token, err)
		}
		for _, info := range infos {
			keys = append(keys, info.Key)
		}
		if next == "" {
			break
		}
		token = next
	}
	if !slices.Equal(keys, []string{"a/nometa", "a/ok"}) {
		t.Fatalf("List(a/): %q; want [a/nometa a/ok]", keys)
	}
	info, err := e.store.Stat(ctxFor(t), "a/nometa")
	if err != nil || info.SHA256 != "" || info.Size != 9 {
		t.Fatalf("Stat(a/nometa): %+v, %v; want size 9, no digest", info, err)
	}
	if got, err := readAll(t, e.store, "a/nometa"); err != nil || string(got) != "no digest" {
		t.Fatalf("Get(a/nometa): %q, %v", got, err)
	}
}

func TestAuthMethods(t *testing.T) {
	creds := ocitest.NewCredentials(t)
	srv := ocitest.NewServer(t, testNS, testBucket)
	srv.Trust(creds)

	t.Run("config file without region, region configured", func(t *testing.T) {
		noRegion := creds.WithConfig(t, "", creds.KeyFile)
		cfg := baseConfig(t, srv, noRegion)
		if _, err := ocistore.New(ctxFor(t), cfg); err == nil {
			t.Fatal("New without any region: no error")
		}
		cfg.Region = "eu-frankfurt-1"
		s, err := ocistore.New(ctxFor(t), cfg)
		if err != nil {
			t.Fatalf("New with Config.Region: %v", err)
		}
		if _, err := s.Put(ctxFor(t), "x", strings.NewReader("x"), blobstore.PutOptions{Size: 1}); err != nil {
			t.Fatalf("Put: %v", err)
		}
	})
	t.Run("missing config file", func(t *testing.T) {
		cfg := baseConfig(t, srv, creds)
		cfg.ConfigFile = filepath.Join(t.TempDir(), "nope")
		_, err := ocistore.New(ctxFor(t), cfg)
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("New with a missing config file: %v; want an error naming it", err)
		}
	})
	t.Run("missing profile", func(t *testing.T) {
		cfg := baseConfig(t, srv, creds)
		cfg.Profile = "NOSUCH"
		_, err := ocistore.New(ctxFor(t), cfg)
		if err == nil || !strings.Contains(err.Error(), "NOSUCH") {
			t.Fatalf("New with a missing profile: %v; want an error naming it", err)
		}
	})
	t.Run("resource principal without its environment", func(t *testing.T) {
		for _, v := range []string{"OCI_RESOURCE_PRINCIPAL_VERSION", "OCI_RESOURCE_PRINCIPAL_RPST", "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM", "OCI_RESOURCE_PRINCIPAL_REGION"} {
			t.Setenv(v, "") // restored at the end
			os.Unsetenv(v)
		}
		cfg := baseConfig(t, srv, creds)
		cfg.Auth = ocistore.AuthResourcePrincipal
		_, err := ocistore.New(ctxFor(t), cfg)
		if err == nil || !strings.Contains(err.Error(), "resource_principal") || !strings.Contains(err.Error(), "OCI_RESOURCE_PRINCIPAL_VERSION") {
			t.Fatalf("New with resource principal and no environment: %v; want an error naming the variable", err)
		}
	})
	t.Run("wrong bucket", func(t *testing.T) {
		cfg := baseConfig(t, srv, creds)
		cfg.Bucket = "other"
		if _, err := ocistore.New(ctxFor(t), cfg); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("New with a missing bucket: %v; want ErrNotFound", err)
		}
	})
	// AuthInstancePrincipal is never constructed here: it would contact
	// the instance metadata service at 169.254.169.254.
}

func TestConfigValidate(t *testing.T) {
	good := ocistore.Config{Namespace: "n", Bucket: "b", Auth: ocistore.AuthInstancePrincipal}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", good, err)
	}
	for name, mod := range map[string]func(*ocistore.Config){
		"no namespace":      func(c *ocistore.Config) { c.Namespace = "" },
		"no bucket":         func(c *ocistore.Config) { c.Bucket = "" },
		"no auth":           func(c *ocistore.Config) { c.Auth = "" },
		"bad auth":          func(c *ocistore.Config) { c.Auth = "password" },
		"endpoint path":     func(c *ocistore.Config) { c.Endpoint = "http://host/path" },
		"endpoint ftp":      func(c *ocistore.Config) { c.Endpoint = "ftp://host" },
		"tiny parts":        func(c *ocistore.Config) { c.PartSize = 1000 },
		"huge parts":        func(c *ocistore.Config) { c.PartSize = 51 << 30 },
		"negative time":     func(c *ocistore.Config) { c.Timeout = -time.Second },
		"negative attempts": func(c *ocistore.Config) { c.MaxAttempts = -1 },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Fatalf("%s: Validate(%+v): no error", name, c)
		}
		if _, err := ocistore.New(context.Background(), c); err == nil {
			t.Fatalf("%s: New: no error", name)
		}
	}
}

// TestPeakHeap256MiB measures the heap a Put and a Get of 256 MiB take
// with the default part size: about one part for a Put (known digest:
// streamed; unknown: spooled to a file first), little for a Get.
func TestPeakHeap256MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 256 MiB measurement")
	}
	const size = 256 << 20
	creds := ocitest.NewCredentials(t)
	e := newEnv(t, creds, func(c *ocistore.Config) { c.PartSize = ocistore.DefaultPartSize })
	digest := blobstoretest.PatternSHA256(1, size)
	for _, c := range []struct {
		name string
		opts blobstore.PutOptions
	}{
		{"size and digest known", blobstore.PutOptions{Size: size, SHA256: digest}},
		{"size known, digest not (spooled)", blobstore.PutOptions{Size: size}},
		{"nothing known (spooled)", blobstore.PutOptions{Size: -1}},
	} {
		var err error
		var info blobstore.Info
		put := blobstoretest.PeakHeap(func() {
			info, err = e.store.Put(ctxFor(t), "big", blobstoretest.NewPatternReader(1, size), c.opts)
		})
		if err != nil || info.SHA256 != digest {
			t.Fatalf("%s: Put: %+v, %v", c.name, info, err)
		}
		t.Logf("ocistore, 256 MiB, PartSize 64 MiB, %s: peak heap above baseline: Put %.1f MiB", c.name, float64(put)/(1<<20))
		if put > ocistore.DefaultPartSize+32<<20 {
			t.Fatalf("%s: peak heap of Put %d bytes; want under one part and 32 MiB", c.name, put)
		}
	}
	var n int64
	var err error
	get := blobstoretest.PeakHeap(func() {
		var rc io.ReadCloser
		if rc, _, err = e.store.Get(ctxFor(t), "big", 0, -1); err == nil {
			n, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
	if err != nil || n != size {
		t.Fatalf("Get: %d bytes, %v", n, err)
	}
	t.Logf("ocistore, 256 MiB: peak heap above baseline: Get %.1f MiB", float64(get)/(1<<20))
	if get > 16<<20 {
		t.Fatalf("peak heap of Get %d bytes; want under 16 MiB", get)
	}
}
