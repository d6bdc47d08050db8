//go:build unix

package jobs

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tarOf(t *testing.T, entries ...entry) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.link, Size: int64(len(e.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"absolute", []entry{{name: filepath.Join(outside, "abs"), body: "x"}}},
		{"dotdot", []entry{{name: "../escape", body: "x"}}},
		{"inner dotdot", []entry{{name: "a/../../escape", body: "x"}}},
		{"symlink parent", []entry{{name: "link", typ: tar.TypeSymlink, link: outside}, {name: "link/pwned", body: "x"}}},
		{"symlink dir entry", []entry{{name: "link", typ: tar.TypeSymlink, link: outside}, {name: "link/sub/", typ: tar.TypeDir, mode: 0o755}}},
		{"hard link", []entry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}},
		{"fifo", []entry{{name: "f", typ: tar.TypeFifo}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			err := extractTar(tarOf(t, tc.entries...), root)
			if !errors.Is(err, ErrUnsafeArchive) {
				t.Fatalf("err %v, want ErrUnsafeArchive", err)
			}
			des, _ := os.ReadDir(outside)
			if len(des) != 0 {
				t.Fatalf("written outside: %v", des)
			}
		})
	}
}

func TestExtractKeepsModesAndReplacesSymlinks(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("safe"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := extractTar(tarOf(t,
		entry{name: "dir/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "dir/run.sh", body: "#!/bin/sh\n", mode: 0o755},
		entry{name: "file", typ: tar.TypeSymlink, link: victim},
		entry{name: "file", body: "new"}, // replaces the symlink, not its target
		entry{name: "rel", typ: tar.TypeSymlink, link: "dir/run.sh"},
	), root)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "dir/run.sh"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("run.sh: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "safe" {
		t.Fatalf("written through a symlink: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "file")); string(b) != "new" {
		t.Fatalf("file %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(root, "rel")); l != "dir/run.sh" {
		t.Fatalf("symlink %q", l)
	}
}

func TestTarGzRoundTripDoesNotFollowSymlinks(t *testing.T) {
	src, outside := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("host file"), 0o600))
	must(os.MkdirAll(filepath.Join(src, "bin/sub"), 0o755))
	must(os.WriteFile(filepath.Join(src, "bin/app"), []byte("app"), 0o755))
	must(os.WriteFile(filepath.Join(src, "bin/sub/x"), []byte("x"), 0o644))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(src, "bin/leak")))
	must(os.Symlink(outside, filepath.Join(src, "out")))
	var buf bytes.Buffer
	missing, err := writeTarGz(&buf, src, []string{"bin/", "nope", "out"})
	must(err)
	if strings.Join(missing, ",") != "nope" {
		t.Fatalf("missing %v", missing)
	}
	if strings.Contains(buf.String(), "host file") {
		t.Fatal("a symlink was followed")
	}
	// A path under a symlinked directory is refused.
	if _, err := writeTarGz(&bytes.Buffer{}, src, []string{"out/secret"}); !errors.Is(err, ErrUnsafeArchive) {
		t.Fatalf("path through a symlink: %v", err)
	}
	dst := t.TempDir()
	must(extractTarGz(&buf, dst))
	fi, err := os.Stat(filepath.Join(dst, "bin/app"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("app: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "bin/sub/x")); string(b) != "x" {
		t.Fatalf("x %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "out")); l != outside {
		t.Fatalf("out link %q", l)
	}
}

func TestRenderCacheKey(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.sum", "a")
	write("sub/go.sum", "b")
	render := func(tmpl string) string {
		t.Helper()
		k, err := renderCacheKey(root, tmpl)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k1 := render(`go-{{ checksum "go.sum" }}-v1`)
	if !strings.HasPrefix(k1, "go-") || !strings.HasSuffix(k1, "-v1") || len(k1) != len("go--v1")+checksumLen {
		t.Fatalf("key %q", k1)
	}
	if render("plain") != "plain" {
		t.Fatal("literal changed")
	}
	all := render(`{{ checksum "**/go.sum" }}`)
	write("sub/go.sum", "c") // not matched by "go.sum"
	if render(`go-{{ checksum "go.sum" }}-v1`) != k1 {
		t.Fatal("an unmatched file changed the key")
	}
	if render(`{{ checksum "**/go.sum" }}`) == all {
		t.Fatal("a matched file's change kept the key")
	}
	write("go.sum", "a2")
	if render(`go-{{ checksum "go.sum" }}-v1`) == k1 {
		t.Fatal("the key did not change with its file")
	}
	if _, err := renderCacheKey(root, `{{ sha "x" }}`); err == nil {
		t.Fatal("bad template accepted")
	}
}
