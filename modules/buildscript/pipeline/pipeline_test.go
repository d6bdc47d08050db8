package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

func mustParse(t *testing.T, src string) *Pipeline {
	t.Helper()
	p, err := Parse("pipeline.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

const diamond = `
jobs:
  setup: {script: [s]}
  build: {script: [b], depends_on: [setup]}
  lint: {script: [l]}
  test: {script: [t], depends_on: [build]}
  docs: {script: [d], depends_on: [setup]}
  deploy: {script: [x], depends_on: [test, docs]}
`

func TestDependencies(t *testing.T) {
	p := mustParse(t, diamond)
	tests := []struct {
		ids  []string
		want []string
	}{
		{[]string{"setup"}, []string{"setup"}},
		{[]string{"test"}, []string{"setup", "build", "test"}},
		{[]string{"deploy"}, []string{"setup", "build", "test", "docs", "deploy"}},
		{[]string{"lint", "docs"}, []string{"setup", "lint", "docs"}},
		{[]string{"test", "build", "test"}, []string{"setup", "build", "test"}},
		{nil, nil},
	}
	for _, tt := range tests {
		got, err := p.Dependencies(tt.ids...)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Dependencies(%v) = %v, %v; want %v", tt.ids, got, err, tt.want)
		}
	}
	if _, err := p.Dependencies("test", "tset"); err == nil || !strings.Contains(err.Error(), `unknown job "tset" (did you mean "test"?)`) {
		t.Errorf("unknown job: %v", err)
	}
}

func TestOrder(t *testing.T) {
	p := mustParse(t, diamond)
	got := p.Order()
	want := []string{"setup", "build", "lint", "test", "docs", "deploy"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Order = %v, want %v", got, want)
	}
	// Every job after its dependencies, whatever the file order.
	p = mustParse(t, "jobs:\n  c: {script: [x], depends_on: [b]}\n  b: {script: [x], depends_on: [a]}\n  a: {script: [x]}\n")
	if got := p.Order(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("Order = %v", got)
	}
}

func TestSpec(t *testing.T) {
	p := mustParse(t, `
env: {A: top, B: top, S: {secret: s1}, T: {secret: t1}}
jobs:
  build:
    image: golang:1.26
    script: [make]
    env: {B: job, S: plain, T: {secret: t2}, U: {secret: u}}
    timeout: 90s
    caches: [{id: gomod, key: "go-{{ checksum \"go.sum\" }}", paths: [.gomod]}]
    artifacts: [{id: bin, paths: [bin/]}]
  test:
    depends_on: [build]
    restore_artifacts: [bin]
    script: [make test]
`)
	s, ok := p.Spec("build")
	if !ok {
		t.Fatal("no spec for build")
	}
	want := contracts.JobSpec{
		Script:    []string{"make"},
		Env:       map[string]string{"A": "top", "B": "job", "S": "plain"},
		SecretEnv: map[string]string{"T": "t2", "U": "u"},
		Image:     "golang:1.26",
		TimeoutMs: 90_000,
		Caches:    []contracts.CacheSpec{{ID: "gomod", Key: `go-{{ checksum "go.sum" }}`, Paths: []string{".gomod"}}},
		Artifacts: []contracts.ArtifactSpec{{ID: "bin", Paths: []string{"bin/"}}},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Spec(build) =\n%+v\nwant\n%+v", s, want)
	}
	s.Caches[0].Paths[0] = "changed" // a copy: the pipeline is not modified
	if j, _ := p.Job("build"); j.Caches[0].Paths[0] != ".gomod" {
		t.Error("Spec shares memory with the pipeline")
	}
	s, _ = p.Spec("test")
	if s.TimeoutMs != DefaultTimeout.Milliseconds() || !reflect.DeepEqual(s.RestoreArtifacts, []string{"bin"}) ||
		!reflect.DeepEqual(s.SecretEnv, map[string]string{"S": "s1", "T": "t1"}) {
		t.Errorf("Spec(test) = %+v", s)
	}
	if src, ok := p.ArtifactJob("bin"); !ok || src != "build" {
		t.Errorf("ArtifactJob(bin) = %q, %v", src, ok)
	}
	if _, ok := p.Spec("nope"); ok {
		t.Error("Spec of an unknown job")
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	if _, err := Find(dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty dir: %v, want ErrNotFound", err)
	}
	if err := os.Mkdir(filepath.Join(dir, Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, Dir, name), []byte("jobs: {a: {script: [x]}}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pipeline.json")
	if got, err := Find(dir); err != nil || got != filepath.Join(dir, Dir, "pipeline.json") {
		t.Errorf("Find = %q, %v", got, err)
	}
	write("pipeline.yml")
	if _, err := Find(dir); err == nil || !strings.Contains(err.Error(), "several pipeline files") {
		t.Errorf("two files: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, Dir, "pipeline.json")); err != nil {
		t.Fatal(err)
	}
	got, err := Find(dir)
	if err != nil || got != filepath.Join(dir, Dir, "pipeline.yml") {
		t.Fatalf("Find = %q, %v", got, err)
	}
	if p, err := Load(got); err != nil || len(p.Jobs) != 1 || p.File != got {
		t.Errorf("Load = %+v, %v", p, err)
	}
	if err := os.Mkdir(filepath.Join(dir, Dir, "pipeline.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
}

func TestLoadLimits(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(big)
	var errs Errors
	if !errors.As(err, &errs) || !strings.Contains(err.Error(), "big.yaml:1: the file has") {
		t.Errorf("big file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: %v", err)
	}
	// A JSON file nested too deep is an error, not a stack overflow.
	deep := `{"jobs": ` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "}"
	if _, err := Parse("p.json", []byte(deep)); err == nil || !strings.Contains(err.Error(), "p.json:1: invalid JSON: nested deeper than 64 levels") {
		t.Errorf("deep JSON: %v", err)
	}
	// So is a job list too long for a build.
	var b strings.Builder
	b.WriteString("jobs:\n")
	for i := range contracts.MaxJobs + 1 {
		b.WriteString("  j" + strconv.Itoa(i) + ": {script: [x]}\n")
	}
	if _, err := Parse("p.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "1001 jobs, max 1000") {
		t.Errorf("too many jobs: %v", err)
	}
}

// TestAliasBomb: a file of aliases that would expand exponentially is
// refused quickly, since no value the schema accepts nests lists.
func TestAliasBomb(t *testing.T) {
	src := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		src += n + ": &" + n + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = n
	}
	src += "jobs:\n  j: {script: *i, inputs: *i, env: {A: *i}}\n"
	// Top-level keys a..i are unknown: errors, but no expansion.
	_, err := Parse("bomb.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), `job "j": script[0]: want a string, not a list`) {
		t.Errorf("bomb: %v", err)
	}
}

// TestManyErrors: a file full of mistakes gives maxErrors lines and a
// count of the rest, quickly.
func TestManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("jobs:\n")
	for i := range 1000 {
		b.WriteString("  j" + strconv.Itoa(i) + ": {script: [x], depends_on: [")
		for k := range 150 {
			b.WriteString("u" + strconv.Itoa(k) + ", ")
		}
		b.WriteString("x]}\n")
	}
	if b.Len() > MaxFileSize {
		t.Fatalf("test file of %d bytes", b.Len())
	}
	start := time.Now()
	_, err := Parse("p.yaml", []byte(b.String()))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(errs), maxErrors+1)
	}
	if last := errs[len(errs)-1].Msg; last != "too many problems: 150900 more not shown" {
		t.Errorf("last error %q", last)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Parse took %v", d)
	}
}
