package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

// runCmd runs the zeroci command line args in-process and returns its
// stdout, stderr and exit code as main would.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRootCmd(zerolog.Nop())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(context.Background())
	code = report(&errOut, cmd, err)
	return out.String(), errOut.String(), code
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "jobs:\n  build: {script: [make]}\n  test: {script: [make test], depends_on: [build]}\n")
	bad := write("bad.yaml", "jobs:\n  build:\n    scirpt: [make]\n  test:\n    script: [make test]\n    depends_on: [biuld]\n    timeout: 10\n")
	badJSON := write("bad.json", "{\n  \"jobs\": {\n    \"a\": {\"script\": [\"x\"],}\n  }\n}\n")
	cycle := write("cycle.yml", "jobs:\n  a: {script: [x], depends_on: [b]}\n  b: {script: [x], depends_on: [a]}\n")

	tests := []struct {
		name           string
		args           []string
		stdout, stderr string
		code           int
	}{
		{"valid", []string{"validate", good}, good + ": valid, 2 jobs\n", "", 0},
		{"invalid", []string{"validate", bad},
			bad + ":2: job \"build\": missing key \"script\": a job needs at least one command\n" +
				bad + ":3: job \"build\": unknown key \"scirpt\" (did you mean \"script\"?)\n" +
				bad + ":6: job \"test\": depends_on: unknown job \"biuld\" (did you mean \"build\"?)\n" +
				bad + ":7: job \"test\": timeout: 10 has no unit: write e.g. 10m or 10s\n",
			"zeroci: validate: " + bad + ": 4 problems\n", 1},
		{"invalid JSON", []string{"validate", badJSON},
			badJSON + ":3: invalid JSON: invalid character '}' looking for beginning of object key string\n",
			"zeroci: validate: " + badJSON + ": 1 problem\n", 1},
		{"cycle", []string{"validate", cycle},
			cycle + ":2: dependency cycle: a -> b -> a\n",
			"zeroci: validate: " + cycle + ": 1 problem\n", 1},
		{"missing file", []string{"validate", filepath.Join(dir, "nope.yaml")}, "",
			"zeroci: validate: pipeline: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory\n", 1},
		{"two files", []string{"validate", good, bad}, "",
			"zeroci: accepts at most 1 arg(s), received 2 (see 'zeroci validate --help')\n", 2},
		{"unknown flag", []string{"validate", "--strict", good}, "",
			"zeroci: unknown flag: --strict (see 'zeroci validate --help')\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCmd(t, tt.args...)
			if stdout != tt.stdout || stderr != tt.stderr || code != tt.code {
				t.Errorf("zeroci %v:\nstdout %q\nwant   %q\nstderr %q\nwant   %q\ncode %d, want %d", tt.args, stdout, tt.stdout, stderr, tt.stderr, code, tt.code)
			}
		})
	}
}

// TestValidateFind: without FILE, validate checks the current directory's
// .zeroci/pipeline.* file.
func TestValidateFind(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_, stderr, code := runCmd(t, "validate")
	if code != 1 || stderr != "zeroci: validate: pipeline: no pipeline file in .zeroci (want .zeroci/pipeline.yaml, .yml or .json)\n" {
		t.Errorf("no file: code %d, stderr %q", code, stderr)
	}
	if err := os.Mkdir(".zeroci", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(".zeroci/pipeline.json", []byte(`{"jobs": {"a": {"script": ["x"]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCmd(t, "validate")
	if code != 0 || stdout != ".zeroci/pipeline.json: valid, 1 job\n" || stderr != "" {
		t.Errorf("found file: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
