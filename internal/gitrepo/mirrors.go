// Package gitrepo keeps a cache of bare mirror clones of git repositories
// and reads commits, files, trees and changes out of them, for the build
// scheduler and the runners' checkouts. It runs the real git binary.
//
// Every git invocation gets explicit arguments (no shell), "--" or
// --end-of-options before caller-supplied values, a context deadline, and
// an environment built from scratch: no system or global git config, no
// terminal prompts, HOME pointing at DIR/.home (where an operator may put
// .ssh keys and known_hosts for ssh URLs), replace refs
// ignored, literal pathspecs, and only the allowed transport protocols
// (never ext:: or other transport helpers). URLs, refs, commits and paths
// are validated before they reach git; one starting with "-" is refused.
//
// A Mirrors and the Repos it returns are safe for concurrent use. Sync of
// one URL is serialised within the process (one process owns the mirror
// directory); Syncs of different URLs run
// concurrently. Reading a Repo while it is being synced is safe: git adds
// objects before it moves refs, and automatic gc is disabled, so a commit
// once fetched stays readable even after its branch is force-pushed.
package gitrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zeroci/zeroci/internal/fsutil"
)

// Errors returned (wrapped) by this package.
var (
	// ErrNotFound: the ref, commit, file or mirror does not exist.
	ErrNotFound = errors.New("gitrepo: not found")
	// ErrInvalid: a URL, ref, commit or path was refused before reaching git.
	ErrInvalid = errors.New("gitrepo: invalid argument")
	// ErrTooLarge: a file is larger than the configured maximum.
	ErrTooLarge = errors.New("gitrepo: file too large")
)

// Defaults for the options.
const (
	DefaultNetworkTimeout = 10 * time.Minute // clone and fetch
	DefaultLocalTimeout   = 2 * time.Minute  // every other git call
	DefaultMaxFileSize    = 16 << 20         // ReadFile
)

// DefaultProtocols are the transports a mirror may be cloned over. "file"
// (local paths and file:// URLs) is not among them: it would let a
// pipeline's URL read repositories on the scheduler's disk.
var DefaultProtocols = []string{"https", "ssh", "git", "http"}

// Mirrors is a directory of bare mirror clones, one per repository URL,
// each named by a hash of its URL (DATA_DIR/buildscript/mirrors).
type Mirrors struct {
	dir       string
	home      string // HOME for git: empty, ours
	protocols []string
	netTO     time.Duration
	localTO   time.Duration
	maxFile   int64

	mu    sync.Mutex
	locks map[string]chan struct{} // mirror name → 1-slot semaphore
}

// Option configures NewMirrors.
type Option func(*Mirrors)

// WithProtocols sets the transports allowed for Sync (git's
// GIT_ALLOW_PROTOCOL names: https, http, ssh, git, file).
func WithProtocols(p ...string) Option {
	return func(m *Mirrors) { m.protocols = append([]string(nil), p...) }
}

// WithTimeouts sets the deadline of one clone or fetch (network) and of
// every other git call (local). Zero keeps the default.
func WithTimeouts(network, local time.Duration) Option {
	return func(m *Mirrors) {
		if network > 0 {
			m.netTO = network
		}
		if local > 0 {
			m.localTO = local
		}
	}
}

// WithMaxFileSize sets the largest file ReadFile returns.
func WithMaxFileSize(n int64) Option {
	return func(m *Mirrors) {
		if n > 0 {
			m.maxFile = n
		}
	}
}

// NewMirrors opens (creating if needed) the mirror cache in dir.
func NewMirrors(dir string, opts ...Option) (*Mirrors, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty mirror directory", ErrInvalid)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("gitrepo: mirror directory: %w", err)
	}
	m := &Mirrors{
		dir:       abs,
		home:      filepath.Join(abs, ".home"),
		protocols: DefaultProtocols,
		netTO:     DefaultNetworkTimeout,
		localTO:   DefaultLocalTimeout,
		maxFile:   DefaultMaxFileSize,
		locks:     map[string]chan struct{}{},
	}
	for _, o := range opts {
		o(m)
	}
	for _, p := range m.protocols {
		if p == "" || strings.ContainsAny(p, ":") || strings.HasPrefix(p, "-") || p == "ext" {
			return nil, fmt.Errorf("%w: protocol %q", ErrInvalid, p)
		}
	}
	if err := os.MkdirAll(m.home, 0o700); err != nil {
		return nil, fmt.Errorf("gitrepo: mirror directory: %w", err)
	}
	return m, nil
}

// mirrorName is the directory name of url's mirror.
func mirrorName(url string) string {
	h := sha256.Sum256([]byte(url))
	return hex.EncodeToString(h[:16]) + ".git"
}

// lock takes the per-URL lock, or fails when ctx ends first.
func (m *Mirrors) lock(ctx context.Context, name string) (unlock func(), err error) {
	m.mu.Lock()
	ch, ok := m.locks[name]
	if !ok {
		ch = make(chan struct{}, 1)
		m.locks[name] = ch
	}
	m.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("gitrepo: waiting for mirror lock: %w", ctx.Err())
	}
}

// Sync brings the mirror of url up to date and returns it: a
// `git clone --mirror` the first time, `git fetch --prune` after. Syncs of
// one URL run one at a time; a later one waits for the earlier (and then
// fetches again). Syncs of different URLs run concurrently. A failed first
// clone leaves nothing behind. Only the allowed protocols are used; url is
// validated (see ValidateURL).
func (m *Mirrors) Sync(ctx context.Context, url string) (*Repo, error) {
	if err := m.ValidateURL(url); err != nil {
		return nil, err
	}
	name := mirrorName(url)
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r := &Repo{m: m, dir: filepath.Join(m.dir, name), url: url}
	if _, err := os.Stat(r.dir); err == nil {
		if err := r.checkOrigin(ctx); err != nil {
			return nil, err
		}
		if _, err := r.git(ctx, m.netTO, "fetch", "--prune", "--quiet", "origin"); err != nil {
			return nil, fmt.Errorf("gitrepo: fetch %s: %w", redact(url), err)
		}
		return r, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("gitrepo: mirror of %s: %w", redact(url), err)
	}
	// Leftovers of a clone interrupted by a crash (the lock is per process:
	// one process owns a mirror directory).
	if stale, _ := filepath.Glob(filepath.Join(m.dir, name+".tmp-*")); len(stale) > 0 {
		for _, d := range stale {
			if err := os.RemoveAll(d); err != nil {
				return nil, fmt.Errorf("gitrepo: clone %s: removing stale %s: %w", redact(url), d, err)
			}
		}
	}
	tmp, err := os.MkdirTemp(m.dir, name+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("gitrepo: clone %s: %w", redact(url), err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	clone := &Repo{m: m, dir: "", url: url}
	if _, err := clone.git(ctx, m.netTO, "clone", "--mirror", "--quiet", "--", url, tmp); err != nil {
		return nil, fmt.Errorf("gitrepo: clone %s: %w", redact(url), err)
	}
	if err := os.Rename(tmp, r.dir); err != nil {
		return nil, fmt.Errorf("gitrepo: clone %s: %w", redact(url), err)
	}
	if err := fsutil.SyncDir(m.dir); err != nil {
		return nil, fmt.Errorf("gitrepo: clone %s: %w", redact(url), err)
	}
	return r, nil
}

// Open returns the existing mirror of url without any network access, for
// readers (runners' checkouts) that must not fetch. ErrNotFound if url has
// never been synced.
func (m *Mirrors) Open(ctx context.Context, url string) (*Repo, error) {
	if err := m.ValidateURL(url); err != nil {
		return nil, err
	}
	r := &Repo{m: m, dir: filepath.Join(m.dir, mirrorName(url)), url: url}
	if _, err := os.Stat(r.dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no mirror of %s", ErrNotFound, redact(url))
	} else if err != nil {
		return nil, fmt.Errorf("gitrepo: mirror of %s: %w", redact(url), err)
	}
	if err := r.checkOrigin(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// checkOrigin makes sure the mirror directory really holds url.
func (r *Repo) checkOrigin(ctx context.Context) error {
	out, err := r.git(ctx, r.m.localTO, "config", "--get", "remote.origin.url")
	if err != nil {
		return fmt.Errorf("gitrepo: mirror of %s: %w", redact(r.url), err)
	}
	if got := strings.TrimSpace(string(out)); got != r.url {
		return fmt.Errorf("gitrepo: mirror %s holds %s, not %s", filepath.Base(r.dir), redact(got), redact(r.url))
	}
	return nil
}

// ValidateURL checks that url may be given to git: not empty, no leading
// "-", no whitespace or control characters, no transport-helper syntax
// ("ext::..."), and a scheme among the allowed protocols: scheme://host/...,
// ssh's user@host:path, or (when "file" is allowed) an absolute path.
func (m *Mirrors) ValidateURL(u string) error {
	bad := func(why string) error { return fmt.Errorf("%w: url %q: %s", ErrInvalid, redact(u), why) }
	switch {
	case u == "":
		return bad("empty")
	case len(u) > 2048:
		return bad("too long")
	case strings.HasPrefix(u, "-"):
		return bad(`starts with "-"`)
	case strings.Contains(u, "::"):
		return bad("transport helpers are not allowed")
	}
	for _, c := range u {
		if c <= ' ' || c == 0x7f {
			return bad("whitespace or control character")
		}
	}
	allowed := func(p string) bool {
		for _, q := range m.protocols {
			if q == p {
				return true
			}
		}
		return false
	}
	if scheme, _, ok := strings.Cut(u, "://"); ok {
		scheme = strings.ToLower(scheme)
		if scheme == "git+ssh" || scheme == "ssh+git" {
			scheme = "ssh"
		}
		if !allowed(scheme) {
			return bad(fmt.Sprintf("protocol %q is not allowed", scheme))
		}
		if scheme == "file" {
			return nil
		}
		p, err := url.Parse(u)
		if err != nil {
			return bad(err.Error())
		}
		if p.Host == "" || strings.HasPrefix(p.Hostname(), "-") || strings.HasPrefix(p.User.Username(), "-") {
			return bad("bad host")
		}
		return nil
	}
	if strings.HasPrefix(u, "/") {
		if !allowed("file") {
			return bad(`local paths need the "file" protocol`)
		}
		return nil
	}
	// scp-like ssh: [user@]host:path, no slash before the colon.
	if host, _, ok := strings.Cut(u, ":"); ok && !strings.Contains(host, "/") {
		if !allowed("ssh") {
			return bad(`protocol "ssh" is not allowed`)
		}
		if _, h, ok := strings.Cut(host, "@"); ok {
			host = h
		}
		if host == "" || strings.HasPrefix(host, "-") || strings.HasPrefix(host, "[-") {
			return bad("bad host")
		}
		return nil
	}
	return bad("not a URL, user@host:path or absolute path")
}

// redact removes a password from url for error messages.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); !ok {
		return u
	}
	return p.Redacted()
}

// LsRemote returns the commit that branch (a branch name, without
// refs/heads/) points to in the repository at url, asking the remote
// (git ls-remote) without fetching anything: how the api polls
// repositories that send no webhooks. ErrNotFound if there is no such
// branch.
func (m *Mirrors) LsRemote(ctx context.Context, url, branch string) (string, error) {
	if err := m.ValidateURL(url); err != nil {
		return "", err
	}
	if err := checkRef(branch); err != nil {
		return "", err
	}
	ref := "refs/heads/" + strings.TrimPrefix(branch, "refs/heads/")
	r := &Repo{m: m, url: url}
	out, err := r.git(ctx, m.netTO, "ls-remote", "--", url, ref)
	if err != nil {
		return "", fmt.Errorf("gitrepo: ls-remote %s: %w", redact(url), err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		id, name, ok := strings.Cut(line, "\t")
		if ok && name == ref && (len(id) == 40 || len(id) == 64) {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: branch %s in %s", ErrNotFound, branch, redact(url))
}
