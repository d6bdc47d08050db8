package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the .want golden files of testdata/good and testdata/bad")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipelineFiles lists the pipeline files of a testdata folder.
func pipelineFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for _, ext := range []string{"yaml", "yml", "json"} {
		m, err := filepath.Glob(filepath.Join(dir, "*."+ext))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no pipeline files in %s", dir)
	}
	seen := map[string]string{}
	for _, f := range files {
		base := strings.TrimSuffix(f, filepath.Ext(f))
		if other, dup := seen[base]; dup {
			t.Fatalf("%s and %s would share %s.want: rename one", other, f, base)
		}
		seen[base] = f
	}
	return files
}

// golden compares got with file.want (the file's name without its
// extension), or rewrites it under -update.
func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	want := strings.TrimSuffix(file, filepath.Ext(file)) + ".want"
	if *update {
		if err := os.WriteFile(want, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("%v (run go test ./modules/buildscript/pipeline -update to create it)", err)
	}
	if !bytes.Equal(data, got) {
		t.Errorf("%s:\n got:\n%s\nwant:\n%s", want, got, data)
	}
}

// goldenJob is a Job as its golden file shows it: the timeout as text.
type goldenJob struct {
	Job
	Timeout string `json:"timeout"`
}

// TestGood parses every file of testdata/good and compares the result, as
// JSON, with its .want file; every job must also give a valid JobSpec.
func TestGood(t *testing.T) {
	for _, file := range pipelineFiles(t, "testdata/good") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(filepath.Base(file), data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			view := struct {
				*Pipeline
				Jobs  []goldenJob `json:"jobs"`
				Order []string    `json:"order"`
			}{Pipeline: p, Order: p.Order()}
			for _, j := range p.Jobs {
				view.Jobs = append(view.Jobs, goldenJob{Job: j, Timeout: j.Timeout.String()})
			}
			got, err := json.MarshalIndent(view, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, file, append(got, '\n'))
		})
	}
}

// TestBad parses every file of testdata/bad and compares the error text
// with its .want file.
func TestBad(t *testing.T) {
	for _, file := range pipelineFiles(t, "testdata/bad") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(filepath.Base(file), data)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			var errs Errors
			if !errors.As(err, &errs) || !errors.Is(err, ErrInvalid) || len(errs) == 0 {
				t.Fatalf("error %T %v: want Errors matching ErrInvalid", err, err)
			}
			for i, e := range errs {
				if e.File != filepath.Base(file) || e.Line < 1 || (i > 0 && e.Line < errs[i-1].Line) {
					t.Errorf("error %d: %+v: want file %s, lines >= 1 and sorted", i, e, filepath.Base(file))
				}
			}
			golden(t, file, []byte(err.Error()+"\n"))
		})
	}
}
