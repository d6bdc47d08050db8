package gitrepo

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// src is a source repository made with the real git, in a temp dir.
type src struct {
	t   *testing.T
	dir string
}

func newSrc(t *testing.T) *src {
	t.Helper()
	s := &src{t: t, dir: t.TempDir()}
	s.git("init", "--quiet", "--initial-branch=main")
	return s
}

// git runs git in the source repository, isolated from the user's config.
func (s *src) git(args ...string) string {
	s.t.Helper()
	home := s.t.TempDir()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// write writes files (path → content; "" deletes) without committing.
func (s *src) write(files map[string]string) {
	s.t.Helper()
	for p, c := range files {
		full := filepath.Join(s.dir, filepath.FromSlash(p))
		if c == "" {
			if err := os.Remove(full); err != nil {
				s.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
}

// commit writes files, commits everything and returns the commit id.
func (s *src) commit(msg string, files map[string]string) string {
	s.t.Helper()
	s.write(files)
	s.git("add", "--all")
	s.git("commit", "--quiet", "--allow-empty", "-m", msg)
	return s.git("rev-parse", "HEAD")
}

func newMirrors(t *testing.T) *Mirrors {
	t.Helper()
	m, err := NewMirrors(filepath.Join(t.TempDir(), "mirrors"), WithProtocols("file"), WithTimeouts(time.Minute, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fixture: a source with three commits and a mirror synced to it.
type fixture struct {
	s          *src
	m          *Mirrors
	r          *Repo
	c1, c2, c3 string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{s: newSrc(t), m: newMirrors(t)}
	f.c1 = f.s.commit("one", map[string]string{"README": "hello\n", "ci.yml": "v1\n", "src/a.go": "package a\n"})
	f.s.git("tag", "v1")
	f.c2 = f.s.commit("two", map[string]string{"src/b.go": "package b\n", "ci.yml": "v2\n"})
	f.s.git("tag", "-a", "-m", "annotated", "v2")
	f.c3 = f.s.commit("three", map[string]string{"README": "", "docs/x.md": "x\n"})
	f.s.git("branch", "feature", f.c2)
	var err error
	if f.r, err = f.m.Sync(context.Background(), f.s.dir); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSyncCloneThenFetch(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	got, err := f.r.Resolve(ctx, "main")
	if err != nil || got != f.c3 {
		t.Fatalf("Resolve(main) = %q, %v; want %s", got, err, f.c3)
	}
	c4 := f.s.commit("four", map[string]string{"new.txt": "new\n"})
	f.s.git("branch", "-D", "feature")
	if _, err := f.r.Resolve(ctx, c4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("new commit before fetch: %v, want ErrNotFound", err)
	}
	r, err := f.m.Sync(ctx, f.s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(ctx, "main"); err != nil || got != c4 {
		t.Fatalf("after fetch Resolve(main) = %q, %v; want %s", got, err, c4)
	}
	if _, err := r.Resolve(ctx, "feature"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted branch after fetch --prune: %v, want ErrNotFound", err)
	}
	// The pruned branch's commit is still readable (no gc).
	if b, err := r.ReadFile(ctx, f.c2, "ci.yml"); err != nil || string(b) != "v2\n" {
		t.Fatalf("ReadFile at pruned commit = %q, %v", b, err)
	}
	// Open reaches the same mirror without fetching.
	o, err := f.m.Open(ctx, f.s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := o.Resolve(ctx, "main"); err != nil || got != c4 {
		t.Fatalf("Open then Resolve(main) = %q, %v", got, err)
	}
	if _, err := f.m.Open(ctx, "/no/such/repo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of unsynced URL: %v, want ErrNotFound", err)
	}
	// Only the mirror and git's home are in the cache directory: no temp leftovers.
	ents, _ := os.ReadDir(f.m.dir)
	if len(ents) != 2 {
		t.Fatalf("mirror dir holds %d entries, want 2: %v", len(ents), ents)
	}
}

func TestSyncFailedCloneLeavesNothing(t *testing.T) {
	m := newMirrors(t)
	_, err := m.Sync(context.Background(), filepath.Join(t.TempDir(), "missing"))
	if err == nil {
		t.Fatal("Sync of a missing repository succeeded")
	}
	ents, _ := os.ReadDir(m.dir)
	if len(ents) != 1 { // .home
		t.Fatalf("failed clone left %v", ents)
	}
}

func TestResolve(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"main", f.c3, nil},
		{"refs/heads/main", f.c3, nil},
		{"feature", f.c2, nil},
		{"v1", f.c1, nil},
		{"v2", f.c2, nil}, // annotated tag → its commit
		{"refs/tags/v2", f.c2, nil},
		{f.c1, f.c1, nil},
		{f.c1[:8], f.c1, nil},
		{strings.ToUpper(f.c1[:8]), f.c1, nil},
		{"nosuch", "", ErrNotFound},
		{strings.Repeat("0", 40), "", ErrNotFound},
		{"deadbeef", "", ErrNotFound},
		{"--upload-pack=touch /tmp/x", "", ErrInvalid},
		{"--upload-pack", "", ErrInvalid},
		{"-n", "", ErrInvalid},
		{"main~1", "", ErrInvalid},
		{"main^", "", ErrInvalid},
		{"main..v1", "", ErrInvalid},
		{"main:ci.yml", "", ErrInvalid},
		{"HEAD@{1}", "", ErrInvalid},
		{"", "", ErrInvalid},
		{"a b", "", ErrInvalid},
	} {
		got, err := f.r.Resolve(ctx, tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Resolve(%q) = %q, %v; want %v", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestReadFile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		commit, path, want string
		err                error
	}{
		{f.c3, "ci.yml", "v2\n", nil},
		{f.c1, "ci.yml", "v1\n", nil},
		{f.c3, "src/a.go", "package a\n", nil},
		{f.c1, "README", "hello\n", nil},
		{f.c3, "README", "", ErrNotFound}, // deleted in c3
		{f.c1, "docs/x.md", "", ErrNotFound},
		{f.c3, "src", "", ErrNotFound}, // a directory
		{f.c3, "src/*.go", "", ErrNotFound},
		{f.c3, "../etc/passwd", "", ErrInvalid},
		{f.c3, "/ci.yml", "", ErrInvalid},
		{f.c3, "", "", ErrInvalid},
		{"main", "ci.yml", "", ErrInvalid}, // commits must be full ids
		{strings.Repeat("a", 40), "ci.yml", "", ErrNotFound},
	} {
		got, err := f.r.ReadFile(ctx, tc.commit, tc.path)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("ReadFile(%.8s, %q) = %q, %v; want %v", tc.commit, tc.path, got, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("ReadFile(%.8s, %q) = %q, %v; want %q", tc.commit, tc.path, got, err, tc.want)
		}
	}
}

func TestReadFileTooLarge(t *testing.T) {
	s := newSrc(t)
	c := s.commit("big", map[string]string{"big": strings.Repeat("x", 2000), "small": "ok"})
	m, err := NewMirrors(t.TempDir(), WithProtocols("file"), WithMaxFileSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Sync(context.Background(), s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFile(context.Background(), c, "big"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadFile(big) = %v, want ErrTooLarge", err)
	}
	if b, err := r.ReadFile(context.Background(), c, "small"); err != nil || string(b) != "ok" {
		t.Fatalf("ReadFile(small) = %q, %v", b, err)
	}
}

func TestParentAndChanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if p, ok, err := f.r.Parent(ctx, f.c3); err != nil || !ok || p != f.c2 {
		t.Fatalf("Parent(c3) = %q, %v, %v; want %s", p, ok, err, f.c2)
	}
	if p, ok, err := f.r.Parent(ctx, f.c1); err != nil || ok || p != "" {
		t.Fatalf("Parent(root) = %q, %v, %v; want none", p, ok, err)
	}
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"c2..c3", f.c2, f.c3, []string{"README", "docs/x.md"}},
		{"c1..c3", f.c1, f.c3, []string{"README", "ci.yml", "docs/x.md", "src/b.go"}},
		{"c3..c1 (reverse)", f.c3, f.c1, []string{"README", "ci.yml", "docs/x.md", "src/b.go"}},
		{"same", f.c2, f.c2, nil},
		{"parent of c2", "", f.c2, []string{"ci.yml", "src/b.go"}},
		{"root", "", f.c1, []string{"README", "ci.yml", "src/a.go"}},
	} {
		got, err := f.r.Changed(ctx, tc.from, tc.to)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Changed = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := f.r.Changed(ctx, "-p", f.c3); !errors.Is(err, ErrInvalid) {
		t.Errorf("Changed(-p) = %v, want ErrInvalid", err)
	}
}

func TestTree(t *testing.T) {
	f := newFixture(t)
	tree, err := f.r.Tree(context.Background(), f.c3)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range tree {
		paths = append(paths, e.Path)
		if e.Mode != "100644" || len(e.Blob) != len(f.c3) {
			t.Errorf("entry %+v", e)
		}
	}
	if want := []string{"ci.yml", "docs/x.md", "src/a.go", "src/b.go"}; !slices.Equal(paths, want) {
		t.Fatalf("Tree paths = %q, want %q", paths, want)
	}
	blob := f.s.git("rev-parse", f.c3+":ci.yml")
	if tree[0].Blob != blob {
		t.Fatalf("ci.yml blob %s, want %s", tree[0].Blob, blob)
	}
}

func TestCheckout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Uncommitted changes in the source must not reach the checkout.
	f.s.write(map[string]string{"dirty.txt": "uncommitted\n", "ci.yml": "edited\n"})
	if err := os.WriteFile(filepath.Join(f.s.dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.s.git("add", "run.sh")
	c4 := f.s.commit("exec", nil) // commits dirty.txt and edited ci.yml too
	f.s.write(map[string]string{"later.txt": "not committed\n"})
	if _, err := f.m.Sync(ctx, f.s.dir); err != nil {
		t.Fatal(err)
	}

	check := func(commit string, want map[string]string) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "ws")
		if err := f.r.Checkout(ctx, commit, dir); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			got[filepath.ToSlash(rel)] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("checkout of %.8s has %v, want %v", commit, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("checkout of %.8s: %s = %q, want %q (all: %v)", commit, k, got[k], v, got)
			}
		}
	}
	check(f.c1, map[string]string{"README": "hello\n", "ci.yml": "v1\n", "src/a.go": "package a\n"})
	check(c4, map[string]string{"ci.yml": "edited\n", "dirty.txt": "uncommitted\n", "docs/x.md": "x\n",
		"src/a.go": "package a\n", "src/b.go": "package b\n", "run.sh": "#!/bin/sh\n"})

	dir := filepath.Join(t.TempDir(), "ws")
	if err := f.r.Checkout(ctx, c4, dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil || st.Mode()&0o100 == 0 {
		t.Fatalf("run.sh not executable: %v, %v", st, err)
	}
	if err := f.r.Checkout(ctx, f.c1, dir); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Checkout into a non-empty dir: %v, want ErrInvalid", err)
	}
	if err := f.r.Checkout(ctx, "--orphan", t.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Checkout(--orphan): %v, want ErrInvalid", err)
	}
}

func TestConcurrentSync(t *testing.T) {
	s := newSrc(t)
	c := s.commit("one", map[string]string{"f": "1"})
	other := newSrc(t)
	oc := other.commit("other", map[string]string{"g": "2"})
	m := newMirrors(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url, want := s.dir, c
			if i >= 8 { // two Syncs of another URL alongside
				url, want = other.dir, oc
			}
			r, err := m.Sync(ctx, url)
			if err == nil {
				var got string
				if got, err = r.Resolve(ctx, "main"); err == nil && got != want {
					err = errors.New("resolved " + got + ", want " + want)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ents, _ := os.ReadDir(m.dir)
	if len(ents) != 3 {
		t.Fatalf("mirror dir holds %v, want two mirrors and .home", ents)
	}
}

func TestSyncLockHonoursContext(t *testing.T) {
	m := newMirrors(t)
	url := "/some/repo"
	unlock, err := m.lock(context.Background(), mirrorName(url))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Sync(ctx, url); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync while locked with a cancelled ctx: %v", err)
	}
}

func TestValidateURL(t *testing.T) {
	m, err := NewMirrors(t.TempDir()) // default protocols: no file
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://example.com/a/b.git", true},
		{"https://user:secret@example.com/a.git", true},
		{"ssh://git@example.com/a.git", true},
		{"git@example.com:a/b.git", true},
		{"git://example.com/a", true},
		{"-oProxyCommand=x", false},
		{"--upload-pack=touch /tmp/pwned", false},
		{"ssh://-oProxyCommand=x/a", false},
		{"git@-oProxyCommand=x:a", false},
		{"ext::sh -c touch% /tmp/pwned", false},
		{"ext::sh", false},
		{"file:///etc", false},
		{"/srv/repo", false},
		{"relative/path", false},
		{"ftp://example.com/a", false},
		{"https://example.com/a b", false},
		{"https://example.com/a\n", false},
		{"", false},
	} {
		err := m.ValidateURL(tc.url)
		if tc.ok && err != nil {
			t.Errorf("ValidateURL(%q) = %v, want ok", tc.url, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateURL(%q) = %v, want ErrInvalid", tc.url, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks a password: %v", err)
		}
	}
	// Sync refuses before running git: nothing is created.
	for _, u := range []string{"-oProxyCommand=x", "ext::sh -c id", "/srv/repo"} {
		if _, err := m.Sync(context.Background(), u); !errors.Is(err, ErrInvalid) {
			t.Errorf("Sync(%q) = %v, want ErrInvalid", u, err)
		}
	}
	ents, _ := os.ReadDir(m.dir)
	if len(ents) != 1 {
		t.Fatalf("refused Syncs left %v", ents)
	}
}

// TestSyncProtocolNotAllowed checks git's own protocol filter too: a
// file:// URL given a Mirrors that allows only https must fail in git even
// if it got past validation.
func TestSyncProtocolNotAllowed(t *testing.T) {
	s := newSrc(t)
	s.commit("one", map[string]string{"f": "1"})
	m := newMirrors(t)
	m.protocols = []string{"https"} // bypass ValidateURL's view
	r := &Repo{m: m, url: s.dir}
	if _, err := r.git(context.Background(), time.Minute, "clone", "--mirror", "--quiet", "--", s.dir, filepath.Join(t.TempDir(), "x")); err == nil {
		t.Fatal("clone over a disallowed protocol succeeded")
	}
}

func TestInputKey(t *testing.T) {
	def := []byte(`{"id":"build","script":["make"],"inputs":["src/**","go.sum"]}`)
	env := map[string]string{"A": "1", "B": "2", "C": "3"}
	globs := []string{"src/**", "go.sum"}
	tree := []Entry{
		{Path: "README", Mode: "100644", Blob: "aaaa"},
		{Path: "go.sum", Mode: "100644", Blob: "bbbb"},
		{Path: "src/a.go", Mode: "100644", Blob: "cccc"},
		{Path: "src/sub/b.go", Mode: "100755", Blob: "dddd"},
	}
	deps := []string{"k1", "k2"}
	base := InputKey(def, env, tree, globs, deps)
	if len(base) != 64 {
		t.Fatalf("key %q", base)
	}
	with := func(f func(e []Entry) []Entry) []Entry { return f(slices.Clone(tree)) }
	same := map[string]string{
		"again":                        InputKey(def, env, tree, globs, deps),
		"env rebuilt in another order": InputKey(def, map[string]string{"C": "3", "B": "2", "A": "1"}, tree, globs, deps),
		"tree reversed":                InputKey(def, env, with(func(e []Entry) []Entry { slices.Reverse(e); return e }), globs, deps),
		"globs reordered":              InputKey(def, env, tree, []string{"go.sum", "src/**"}, deps),
		"deps reordered":               InputKey(def, env, tree, globs, []string{"k2", "k1"}),
		"unmatched file changed":       InputKey(def, env, with(func(e []Entry) []Entry { e[0].Blob = "ffff"; return e }), globs, deps),
		"unmatched file added":         InputKey(def, env, append(slices.Clone(tree), Entry{"docs/x", "100644", "eeee"}), globs, deps),
	}
	for name, k := range same {
		if k != base {
			t.Errorf("%s: key changed", name)
		}
	}
	differ := map[string]string{
		"definition":          InputKey([]byte(`{"id":"build","script":["make all"]}`), env, tree, globs, deps),
		"env value":           InputKey(def, map[string]string{"A": "1", "B": "2", "C": "4"}, tree, globs, deps),
		"env key/value shift": InputKey(def, map[string]string{"A": "12", "B": "", "C": "3"}, tree, globs, deps),
		"matched content":     InputKey(def, env, with(func(e []Entry) []Entry { e[2].Blob = "ffff"; return e }), globs, deps),
		"matched mode":        InputKey(def, env, with(func(e []Entry) []Entry { e[3].Mode = "100644"; return e }), globs, deps),
		"matched file added":  InputKey(def, env, append(slices.Clone(tree), Entry{"src/new.go", "100644", "eeee"}), globs, deps),
		"matched file gone":   InputKey(def, env, tree[:3], globs, deps),
		"dependency key":      InputKey(def, env, tree, globs, []string{"k1", "k3"}),
		"dependency dropped":  InputKey(def, env, tree, globs, []string{"k1"}),
		"globs":               InputKey(def, env, tree, []string{"src/**"}, deps),
	}
	seen := map[string]string{base: "base"}
	for name, k := range differ {
		if prev, ok := seen[k]; ok {
			t.Errorf("%s: key equals that of %s", name, prev)
		}
		seen[k] = name
	}
}

// TestInputKeyFromRepo ties Tree and InputKey together on a real repository.
func TestInputKeyFromRepo(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := func(commit string) string {
		tree, err := f.r.Tree(ctx, commit)
		if err != nil {
			t.Fatal(err)
		}
		return InputKey([]byte("job"), nil, tree, []string{"src/**"}, nil)
	}
	// c2 → c3 changes only README and docs/: same key. c1 → c2 adds src/b.go.
	if key(f.c2) != key(f.c3) {
		t.Error("key changed with no change under src/")
	}
	if key(f.c1) == key(f.c2) {
		t.Error("key unchanged although src/b.go was added")
	}
}

// TestIgnoresUserConfig: the caller's HOME, XDG config and GIT_* variables
// must not reach git. The user config here would redirect the clone to a
// missing path and make every command fail.
func TestIgnoresUserConfig(t *testing.T) {
	s := newSrc(t)
	c := s.commit("one", map[string]string{"f": "1"})
	home := t.TempDir()
	cfg := "[url \"/nonexistent/\"]\n\tinsteadOf = " + s.dir + "\n[core]\n\thooksPath = /nonexistent\n"
	for _, p := range []string{filepath.Join(home, ".gitconfig"), filepath.Join(home, "xdg", "git", "config")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "xdg"))
	t.Setenv("GIT_DIR", "/nonexistent")
	t.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(home, ".gitconfig"))
	m := newMirrors(t)
	r, err := m.Sync(context.Background(), s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(context.Background(), "main"); err != nil || got != c {
		t.Fatalf("Resolve(main) = %q, %v", got, err)
	}
}

func TestCancelledContext(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.r.Resolve(ctx, "main"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Resolve with a cancelled ctx: %v", err)
	}
	if _, err := f.m.Sync(ctx, f.s.dir); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync with a cancelled ctx: %v", err)
	}
}

func TestStaleCloneRemoved(t *testing.T) {
	s := newSrc(t)
	s.commit("one", map[string]string{"f": "1"})
	m := newMirrors(t)
	stale := filepath.Join(m.dir, mirrorName(s.dir)+".tmp-123")
	if err := os.MkdirAll(filepath.Join(stale, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(context.Background(), s.dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale clone still there: %v", err)
	}
}

func TestArchive(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var buf bytes.Buffer
	if err := f.r.Archive(ctx, f.c1, &buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = string(b)
	}
	want := map[string]string{"README": "hello\n", "ci.yml": "v1\n", "src/a.go": "package a\n"}
	if !maps.Equal(got, want) {
		t.Fatalf("archive of c1 = %v, want %v", got, want)
	}
	if err := f.r.Archive(ctx, "--output=/tmp/x", io.Discard); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Archive(--output): %v, want ErrInvalid", err)
	}
	if err := f.r.Archive(ctx, strings.Repeat("e", 40), io.Discard); err == nil {
		t.Fatal("Archive of a missing commit succeeded")
	}
}

func TestLsRemote(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	head := f.s.commit("four", map[string]string{"x": "4"})
	got, err := f.m.LsRemote(ctx, f.s.dir, "main")
	if err != nil || got != head {
		t.Fatalf("LsRemote(main) = %q, %v; want %s", got, err, head)
	}
	if _, err := f.m.LsRemote(ctx, f.s.dir, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LsRemote of a missing branch: %v, want ErrNotFound", err)
	}
	if _, err := f.m.LsRemote(ctx, "--upload-pack=evil", "main"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("LsRemote of an option URL: %v, want ErrInvalid", err)
	}
}
