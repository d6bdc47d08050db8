package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Repo is one mirror. Its methods take full commit ids (as Resolve returns
// them) and never touch the network. Safe for concurrent use.
type Repo struct {
	m   *Mirrors
	dir string // the bare mirror; "" only while cloning
	url string
}

// Entry is one file of a commit's tree.
type Entry struct {
	Path string // slash-separated, relative to the repository root
	Mode string // octal git mode: 100644, 100755, 120000 (symlink), 160000 (submodule)
	Blob string // object id: the blob, or the submodule's commit for 160000
}

// maxOutput caps what one git call may print, so a huge tree or diff
// cannot exhaust memory.
const maxOutput = 256 << 20

// Resolve turns a branch, tag, full ref (refs/heads/x) or full or
// abbreviated commit id into a full commit id, using git's rules
// (refs/<x>, refs/tags/<x>, refs/heads/<x>, ..., then object ids; an
// annotated tag resolves to its commit). ErrNotFound when nothing, or more
// than one object for an abbreviation, matches; ErrInvalid for a
// refOrCommit that is not a plain name (leading "-", "..", "^", "~", ":",
// "@{", whitespace...).
func (r *Repo) Resolve(ctx context.Context, refOrCommit string) (string, error) {
	if err := checkRef(refOrCommit); err != nil {
		return "", err
	}
	out, err := r.git(ctx, r.m.localTO, "rev-parse", "--verify", "--quiet", "--end-of-options", refOrCommit+"^{commit}")
	if err != nil {
		if exitCode(err) == 1 {
			return "", fmt.Errorf("%w: %q in %s", ErrNotFound, refOrCommit, redact(r.url))
		}
		return "", fmt.Errorf("gitrepo: resolve %q: %w", refOrCommit, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ReadFile returns the content of the regular file at path (slash-separated,
// relative to the root) in commit. ErrNotFound when there is no such file
// or it is a directory, symlink or submodule; ErrTooLarge past the
// WithMaxFileSize limit.
func (r *Repo) ReadFile(ctx context.Context, commit, path string) ([]byte, error) {
	if err := r.checkCommit(ctx, commit); err != nil {
		return nil, err
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	out, err := r.git(ctx, r.m.localTO, "ls-tree", "-z", "--long", "--full-tree", commit, "--", path)
	if err != nil {
		return nil, fmt.Errorf("gitrepo: read %s at %s: %w", path, commit, err)
	}
	// "<mode> SP <type> SP <object> SP+ <size> TAB <path> NUL"
	var blob string
	var size int64 = -1
	for _, rec := range strings.Split(string(out), "\x00") {
		meta, name, ok := strings.Cut(rec, "\t")
		if !ok || name != path {
			continue
		}
		f := strings.Fields(meta)
		if len(f) != 4 || f[1] != "blob" || (f[0] != "100644" && f[0] != "100755") {
			return nil, fmt.Errorf("%w: %s at %s is not a regular file", ErrNotFound, path, commit)
		}
		blob = f[2]
		if size, err = strconv.ParseInt(f[3], 10, 64); err != nil {
			return nil, fmt.Errorf("gitrepo: read %s at %s: bad size %q", path, commit, f[3])
		}
	}
	if blob == "" {
		return nil, fmt.Errorf("%w: %s at %s", ErrNotFound, path, commit)
	}
	if size > r.m.maxFile {
		return nil, fmt.Errorf("%w: %s at %s: %d bytes, max %d", ErrTooLarge, path, commit, size, r.m.maxFile)
	}
	data, err := r.git(ctx, r.m.localTO, "cat-file", "blob", blob)
	if err != nil {
		return nil, fmt.Errorf("gitrepo: read %s at %s: %w", path, commit, err)
	}
	return data, nil
}

// Parent returns commit's first parent, and false for a root commit.
func (r *Repo) Parent(ctx context.Context, commit string) (string, bool, error) {
	if err := r.checkCommit(ctx, commit); err != nil {
		return "", false, err
	}
	out, err := r.git(ctx, r.m.localTO, "rev-list", "--parents", "-n", "1", commit, "--")
	if err != nil {
		return "", false, fmt.Errorf("gitrepo: parent of %s: %w", commit, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "", false, nil
	}
	return f[1], true, nil
}

// Changed lists the paths that differ between the trees of from and to
// (added, modified, deleted, mode changed; a rename lists both names),
// sorted. With from == "" it compares to with its first parent, and for a
// root commit lists every file of to. from need not be an ancestor of to.
func (r *Repo) Changed(ctx context.Context, from, to string) ([]string, error) {
	if err := r.checkCommit(ctx, to); err != nil {
		return nil, err
	}
	if from == "" {
		p, ok, err := r.Parent(ctx, to)
		if err != nil {
			return nil, err
		}
		if !ok {
			out, err := r.git(ctx, r.m.localTO, "ls-tree", "-r", "-z", "--name-only", "--full-tree", to, "--")
			if err != nil {
				return nil, fmt.Errorf("gitrepo: files of %s: %w", to, err)
			}
			names := splitZ(out)
			slices.Sort(names)
			return names, nil
		}
		from = p
	} else if err := r.checkCommit(ctx, from); err != nil {
		return nil, err
	}
	out, err := r.git(ctx, r.m.localTO, "diff-tree", "-r", "-z", "--name-only", "--no-renames", "--no-ext-diff", "--no-textconv", from, to, "--")
	if err != nil {
		return nil, fmt.Errorf("gitrepo: changes %s..%s: %w", from, to, err)
	}
	names := splitZ(out)
	slices.Sort(names)
	return names, nil
}

// Tree lists every file of commit (ls-tree -r), sorted by path.
func (r *Repo) Tree(ctx context.Context, commit string) ([]Entry, error) {
	if err := r.checkCommit(ctx, commit); err != nil {
		return nil, err
	}
	out, err := r.git(ctx, r.m.localTO, "ls-tree", "-r", "-z", "--full-tree", commit, "--")
	if err != nil {
		return nil, fmt.Errorf("gitrepo: tree of %s: %w", commit, err)
	}
	var es []Entry
	for _, rec := range splitZ(out) {
		meta, name, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("gitrepo: tree of %s: bad ls-tree line %q", commit, rec)
		}
		es = append(es, Entry{Path: name, Mode: f[0], Blob: f[2]})
	}
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return es, nil
}

// Checkout writes the files of commit into dir, which must not exist or be
// empty: a fresh workspace, with no .git directory, made from the mirror
// without network access. A temporary index outside dir is used and
// removed. Submodules are left as empty directories; no smudge filters
// (Git LFS) run, since no git config is read.
func (r *Repo) Checkout(ctx context.Context, commit, dir string) error {
	if err := r.checkCommit(ctx, commit); err != nil {
		return err
	}
	if dir == "" {
		return fmt.Errorf("%w: empty checkout directory", ErrInvalid)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("gitrepo: checkout %s: %w", commit, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("gitrepo: checkout %s: %w", commit, err)
	}
	if ents, err := os.ReadDir(abs); err != nil {
		return fmt.Errorf("gitrepo: checkout %s: %w", commit, err)
	} else if len(ents) > 0 {
		return fmt.Errorf("%w: checkout directory %s is not empty", ErrInvalid, abs)
	}
	idxDir, err := os.MkdirTemp("", "zeroci-index-")
	if err != nil {
		return fmt.Errorf("gitrepo: checkout %s: %w", commit, err)
	}
	defer os.RemoveAll(idxDir)
	env := []string{"GIT_INDEX_FILE=" + filepath.Join(idxDir, "index"), "GIT_WORK_TREE=" + abs}
	wt := []string{"-c", "core.bare=false", "-c", "core.autocrlf=false", "-c", "core.symlinks=true"}
	if _, err := r.gitEnv(ctx, r.m.localTO, env, append(wt, "read-tree", commit)...); err != nil {
		return fmt.Errorf("gitrepo: checkout %s: %w", commit, err)
	}
	if _, err := r.gitEnv(ctx, r.m.localTO, env, append(wt, "checkout-index", "--all", "--force")...); err != nil {
		return fmt.Errorf("gitrepo: checkout %s: %w", commit, err)
	}
	return nil
}

// checkCommit requires a full lowercase hex object id (SHA-1 or SHA-256)
// naming a commit in the mirror.
func (r *Repo) checkCommit(ctx context.Context, c string) error {
	if len(c) != 40 && len(c) != 64 {
		return fmt.Errorf("%w: commit %q: want a full hex id (see Resolve)", ErrInvalid, c)
	}
	for i := 0; i < len(c); i++ {
		if !('0' <= c[i] && c[i] <= '9' || 'a' <= c[i] && c[i] <= 'f') {
			return fmt.Errorf("%w: commit %q: want a full hex id (see Resolve)", ErrInvalid, c)
		}
	}
	out, err := r.git(ctx, r.m.localTO, "cat-file", "-t", c)
	if err != nil {
		if exitCode(err) == 128 {
			return fmt.Errorf("%w: commit %s in %s", ErrNotFound, c, redact(r.url))
		}
		return fmt.Errorf("gitrepo: commit %s: %w", c, err)
	}
	if t := strings.TrimSpace(string(out)); t != "commit" {
		return fmt.Errorf("%w: %s is a %s, not a commit", ErrNotFound, c, t)
	}
	return nil
}

// checkRef accepts a plain ref name or object id: no revision syntax.
func checkRef(s string) error {
	bad := func(why string) error { return fmt.Errorf("%w: ref %q: %s", ErrInvalid, s, why) }
	switch {
	case s == "":
		return bad("empty")
	case len(s) > 1024:
		return bad("too long")
	case !utf8.ValidString(s):
		return bad("not UTF-8")
	case strings.HasPrefix(s, "-"):
		return bad(`starts with "-"`)
	case strings.Contains(s, ".."), strings.Contains(s, "@{"), strings.Contains(s, "//"),
		strings.HasPrefix(s, "/"), strings.HasSuffix(s, "/"), strings.HasSuffix(s, "."), strings.HasSuffix(s, ".lock"):
		return bad("not a ref name")
	case s == "@":
		return bad("not a ref name")
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f || strings.ContainsRune("~^:?*[\\", c) {
			return bad(fmt.Sprintf("%q is not allowed", c))
		}
	}
	return nil
}

// checkPath accepts a clean relative slash-separated path.
func checkPath(p string) error {
	bad := func(why string) error { return fmt.Errorf("%w: path %q: %s", ErrInvalid, p, why) }
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return bad("want a relative file path")
	}
	if strings.ContainsRune(p, 0) || strings.Contains(p, "\n") {
		return bad("control character")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("not clean")
		}
	}
	return nil
}

func splitZ(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\x00")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// exitCode is git's exit status in err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// git runs git on the mirror (or with no repository while cloning).
func (r *Repo) git(ctx context.Context, timeout time.Duration, args ...string) ([]byte, error) {
	return r.gitEnv(ctx, timeout, nil, args...)
}

// gitEnv runs git with extra environment variables, returning its stdout.
// The error carries git's (capped, redacted) stderr and wraps the
// *exec.ExitError.
func (r *Repo) gitEnv(ctx context.Context, timeout time.Duration, extra []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout capBuffer
	stdout.max = maxOutput
	if err := r.run(ctx, extra, &stdout, args...); err != nil {
		return nil, err
	}
	if stdout.over {
		return nil, fmt.Errorf("git %s: output over %d bytes", args[0], maxOutput)
	}
	return stdout.Bytes(), nil
}

// run runs git with extra environment variables and its stdout going to
// stdout. The error carries git's (capped, redacted) stderr and wraps the
// *exec.ExitError.
func (r *Repo) run(ctx context.Context, extra []string, stdout io.Writer, args ...string) error {
	full := []string{"-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "core.fsync=all",
		"-c", "credential.helper=", "-c", "core.hooksPath=/dev/null"}
	if r.dir != "" {
		full = append(full, "--git-dir="+r.dir)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Dir = r.m.home
	cmd.Env = append(r.m.env(), extra...)
	var stderr capBuffer
	stderr.max = 4096
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	setProcessGroup(cmd)
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("git %s: %w (%w)", args[0], ctx.Err(), err)
	}
	msg := strings.TrimSpace(stderr.String())
	if r.url != "" {
		msg = strings.ReplaceAll(msg, r.url, redact(r.url))
	}
	if msg != "" {
		return fmt.Errorf("git %s: %w: %s", args[0], err, msg)
	}
	return fmt.Errorf("git %s: %w", args[0], err)
}

// Archive writes the files of commit to w as a tar stream (git archive):
// what a runner unpacks into a fresh workspace when it has no access to
// the mirror. Like Checkout it reads no config, so no export filters run.
// w must not fail slowly: the whole archive is bounded by the network
// timeout.
func (r *Repo) Archive(ctx context.Context, commit string, w io.Writer) error {
	if err := r.checkCommit(ctx, commit); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.m.netTO)
	defer cancel()
	if err := r.run(ctx, nil, w, "archive", "--format=tar", commit); err != nil {
		return fmt.Errorf("gitrepo: archive %s: %w", commit, err)
	}
	return nil
}

// env is the whole environment git runs with: nothing inherited but PATH.
func (m *Mirrors) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + m.home,
		"XDG_CONFIG_HOME=" + m.home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false",
		"SSH_ASKPASS=/bin/false",
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes",
		"GIT_ALLOW_PROTOCOL=" + strings.Join(m.protocols, ":"),
		"GIT_NO_REPLACE_OBJECTS=1",
		"GIT_LITERAL_PATHSPECS=1",
		"LC_ALL=C",
	}
}

// capBuffer keeps at most max bytes and remembers whether more came.
type capBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
