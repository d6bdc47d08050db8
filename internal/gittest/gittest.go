// Package gittest makes real git repositories for tests and benchmarks:
// the URLs the scheduler builds from, with an isolated git configuration
// (no system or user config, a throwaway HOME, a fixed author).
package gittest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Repo creates a repository with files (slash-separated paths → content)
// committed on branch main and returns its directory, which works as a
// repository URL where local URLs are allowed.
func Repo(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	Git(tb, dir, "init", "-q", "-b", "main")
	Commit(tb, dir, files)
	return dir
}

// PipelineRepo is Repo with pipeline as .zeroci/pipeline.yaml.
func PipelineRepo(tb testing.TB, pipeline string) string {
	tb.Helper()
	return Repo(tb, map[string]string{".zeroci/pipeline.yaml": pipeline})
}

// Commit writes files into the repository at dir and commits everything
// (an empty commit when nothing changed); it returns the new commit id.
func Commit(tb testing.TB, dir string, files map[string]string) string {
	tb.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	Git(tb, dir, "add", "-A")
	Git(tb, dir, "commit", "-q", "--allow-empty", "-m", "commit")
	return Git(tb, dir, "rev-parse", "HEAD")
}

// Git runs git in dir and returns its trimmed output.
func Git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=zeroci-test", "GIT_AUTHOR_EMAIL=test@localhost",
		"GIT_COMMITTER_NAME=zeroci-test", "GIT_COMMITTER_EMAIL=test@localhost", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null", "HOME="+tb.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}
