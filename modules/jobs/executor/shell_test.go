//go:build unix

package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

type line struct {
	stream contracts.Stream
	text   string
}

// recorder is an Output that keeps every line and checks that calls never
// overlap.
type recorder struct {
	mu      sync.Mutex
	busy    bool
	overlap bool
	lines   []line
	onLine  func(line) // called outside mu
}

func (r *recorder) out(stream contracts.Stream, text string) {
	r.mu.Lock()
	if r.busy {
		r.overlap = true
	}
	r.busy = true
	r.lines = append(r.lines, line{stream, text})
	f := r.onLine
	r.mu.Unlock()
	if f != nil {
		f(line{stream, text})
	}
	r.mu.Lock()
	r.busy = false
	r.mu.Unlock()
}

func (r *recorder) stream(s contracts.Stream) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if l.stream == s {
			out = append(out, l.text)
		}
	}
	return out
}

func run(t *testing.T, ex Executor, ctx context.Context, s Spec) (Result, *recorder) {
	t.Helper()
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	rec := &recorder{}
	res := ex.Run(ctx, s, rec.out)
	if rec.overlap {
		t.Error("Output calls overlapped")
	}
	return res, rec
}

func exitCode(r Result) string {
	if r.ExitCode == nil {
		return "none"
	}
	return strconv.Itoa(*r.ExitCode)
}

func TestShellExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []string
		want   string
		stdout []string
	}{
		{"success", []string{"echo hi"}, "0", []string{"hi"}},
		{"exit 3", []string{"echo before", "exit 3", "echo after"}, "3", []string{"before"}},
		{"sh -e stops at the first failure", []string{"echo one", "false", "echo two"}, "1", []string{"one"}},
		{"multi-line entry", []string{"for i in 1 2; do\n  echo $i\ndone"}, "0", []string{"1", "2"}},
		{"final line without newline", []string{"printf last"}, "0", []string{"last"}},
		{"a script that starts with a dash", []string{"-x 2>/dev/null || echo ran", "echo after"}, "0", []string{"ran", "after"}},
		// Longer than maxInlineScript: through a file, same behaviour.
		{"long script", append(slices.Repeat([]string{": " + strings.Repeat("x", 1000)}, 40), "echo long", "exit 5"), "5", []string{"long"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, rec := run(t, NewShell(), context.Background(), Spec{Script: tc.script})
			if res.Err != nil || exitCode(res) != tc.want || res.TimedOut || res.Canceled {
				t.Fatalf("result %+v (exit %s), want exit %s", res, exitCode(res), tc.want)
			}
			if res.Succeeded() != (tc.want == "0") {
				t.Errorf("Succeeded() = %v", res.Succeeded())
			}
			if got := rec.stream(contracts.StreamStdout); !slices.Equal(got, tc.stdout) {
				t.Errorf("stdout %q, want %q", got, tc.stdout)
			}
		})
	}
}

func TestShellEnvAndDir(t *testing.T) {
	t.Setenv("ZEROCI_TEST_RUNNER_ONLY", "leaked")
	dir := t.TempDir()
	res, rec := run(t, NewShell(), context.Background(), Spec{
		Dir: dir,
		Env: map[string]string{
			"ZEROCI_JOB": "build", "ZEROCI_BUILD_NUMBER": "7", "WITH_SPACES": "a b  c",
			"MULTI": "x\ny", "PATH": "/usr/bin:/bin",
		},
		Script: []string{
			`echo "$ZEROCI_JOB/$ZEROCI_BUILD_NUMBER/$WITH_SPACES"`,
			`echo "${ZEROCI_TEST_RUNNER_ONLY-unset}"`,
			`echo "$PATH"`,
			`printf '%s|' "$MULTI"; echo`,
			`pwd -P`,
		},
	})
	if !res.Succeeded() {
		t.Fatalf("result %+v", res)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"build/7/a b  c", "unset", "/usr/bin:/bin", "x", "y|", real}
	if got := rec.stream(contracts.StreamStdout); !slices.Equal(got, want) {
		t.Fatalf("stdout %q, want %q", got, want)
	}
}

func TestShellStreamsKeepOrder(t *testing.T) {
	const n = 2000
	res, rec := run(t, NewShell(), context.Background(), Spec{Script: []string{
		fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); echo out$i; echo err$i >&2; done`, n),
	}})
	if !res.Succeeded() {
		t.Fatalf("result %+v", res)
	}
	for _, s := range []contracts.Stream{contracts.StreamStdout, contracts.StreamStderr} {
		got := rec.stream(s)
		if len(got) != n {
			t.Fatalf("%s: %d lines, want %d", s, len(got), n)
		}
		for i, l := range got {
			if want := fmt.Sprintf("%s%d", s[3:], i+1); l != want {
				t.Fatalf("%s line %d: %q, want %q", s, i, l, want)
			}
		}
	}
}

func TestShellHugeOutput(t *testing.T) {
	const n = 200_000
	res, rec := run(t, NewShell(), context.Background(), Spec{Script: []string{fmt.Sprintf("seq 1 %d", n)}})
	if !res.Succeeded() {
		t.Fatalf("result %+v", res)
	}
	got := rec.stream(contracts.StreamStdout)
	if len(got) != n {
		t.Fatalf("%d lines, want %d", len(got), n)
	}
	for i, l := range got {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("line %d: %q", i, l)
		}
	}
}

func TestShellLongLineAndInvalidUTF8(t *testing.T) {
	res, rec := run(t, NewShell(), context.Background(), Spec{Script: []string{
		`head -c 200000 /dev/zero | tr '\0' x; echo`,
		`printf 'a\377b\n' >&2`,
	}})
	if !res.Succeeded() {
		t.Fatalf("result %+v", res)
	}
	var lens []int
	for _, l := range rec.stream(contracts.StreamStdout) {
		lens = append(lens, len(l))
	}
	m := contracts.MaxLogLineLen
	if want := []int{m, m, m, 200000 - 3*m}; !slices.Equal(lens, want) {
		t.Errorf("piece lengths %v, want %v", lens, want)
	}
	if got := rec.stream(contracts.StreamStderr); !slices.Equal(got, []string{"a\uFFFDb"}) {
		t.Errorf("stderr %q", got)
	}
}

// waitGroupGone fails the test unless no live process of group pgid is left
// within a few seconds. Zombies do not count: where PID 1 does not reap
// orphans (this sandbox's does not), a killed orphan stays a zombie and
// syscall.Kill(-pgid, 0) keeps succeeding although nothing runs.
func waitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Kill(-pgid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		live := liveMembers(pgid)
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has live members %v (kill: %v)", pgid, live, err)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// pgidFrom reads the group id the script printed first ($$: sh leads its group).
func pgidFrom(t *testing.T, rec *recorder) int {
	t.Helper()
	out := rec.stream(contracts.StreamStdout)
	if len(out) == 0 {
		t.Fatal("script printed nothing")
	}
	pgid, err := strconv.Atoi(out[0])
	if err != nil {
		t.Fatalf("first line %q: %v", out[0], err)
	}
	return pgid
}

func TestShellTimeoutKillsGroup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []string
		signal syscall.Signal
	}{
		// sh dies of SIGTERM; the background sleep gets it too.
		{"SIGTERM", []string{"echo $$", "sleep 300 &", "sleep 300"}, syscall.SIGTERM},
		// Everything ignores SIGTERM (the disposition is inherited), so it
		// takes the SIGKILL after the grace period.
		{"SIGKILL after grace", []string{"trap '' TERM", "echo $$", "sleep 300 &", "sleep 300"}, syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := NewShell(WithGrace(300 * time.Millisecond))
			start := time.Now()
			res, rec := run(t, ex, context.Background(), Spec{Script: tc.script, Timeout: 300 * time.Millisecond})
			took := time.Since(start)
			pgid := pgidFrom(t, rec)
			waitGroupGone(t, pgid)
			if !res.TimedOut || res.Canceled || res.ExitCode != nil || res.Signal != tc.signal || res.Err != nil {
				t.Fatalf("result %+v, want timed out by %v", res, tc.signal)
			}
			if took > 3*time.Second {
				t.Errorf("Run took %v", took)
			}
		})
	}
}

func TestShellCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{onLine: func(l line) {
		if l.text == "ready" {
			cancel()
		}
	}}
	res := NewShell().Run(ctx, Spec{Dir: t.TempDir(), Script: []string{"echo $$", "sleep 300 &", "echo ready", "sleep 300"}}, rec.out)
	waitGroupGone(t, pgidFrom(t, rec))
	if !res.Canceled || res.TimedOut || res.Signal != syscall.SIGTERM {
		t.Fatalf("result %+v", res)
	}
}

// A script that ends leaving a background process: the process is stopped,
// and Run does not wait for it.
func TestShellLeftoversStopped(t *testing.T) {
	start := time.Now()
	res, rec := run(t, NewShell(), context.Background(), Spec{Script: []string{"echo $$", "sleep 300 &", "echo done"}})
	if !res.Succeeded() {
		t.Fatalf("result %+v", res)
	}
	waitGroupGone(t, pgidFrom(t, rec))
	if took := time.Since(start); took > DefaultGrace {
		t.Errorf("Run took %v", took)
	}
}

// A process that left the group (setsid) and holds stdout cannot keep Run
// waiting beyond the drain bound.
func TestShellDrainBound(t *testing.T) {
	ex := NewShell(WithDrainTimeout(200 * time.Millisecond))
	start := time.Now()
	res, rec := run(t, ex, context.Background(), Spec{Script: []string{"setsid sleep 300 &", "echo $!", "echo done"}})
	took := time.Since(start)
	escaped := pgidFrom(t, rec)
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })
	if !res.Succeeded() || !slices.Equal(rec.stream(contracts.StreamStdout)[1:], []string{"done"}) {
		t.Fatalf("result %+v, lines %q", res, rec.lines)
	}
	if took > 2*time.Second {
		t.Errorf("Run took %v with a 200ms drain bound", took)
	}
}

func TestShellInvalidSpec(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"empty script", Spec{Dir: dir}, "empty script"},
		{"no dir", Spec{Script: []string{"true"}}, "no workspace"},
		{"missing dir", Spec{Script: []string{"true"}, Dir: filepath.Join(dir, "nope")}, "no such file"},
		{"dir is a file", Spec{Script: []string{"true"}, Dir: file}, "not a directory"},
		{"env name with =", Spec{Script: []string{"true"}, Dir: dir, Env: map[string]string{"A=B": "x"}}, "env name"},
		{"env value with NUL", Spec{Script: []string{"true"}, Dir: dir, Env: map[string]string{"A": "x\x00"}}, "NUL"},
		{"negative timeout", Spec{Script: []string{"true"}, Dir: dir, Timeout: -time.Second}, "negative timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := NewShell().Run(context.Background(), tc.spec, nil)
			if !errors.Is(res.Err, ErrInvalidSpec) || !strings.Contains(res.Err.Error(), tc.want) || res.ExitCode != nil {
				t.Fatalf("result %+v, want ErrInvalidSpec mentioning %q", res, tc.want)
			}
		})
	}
}

func TestShellNilOutputAndConcurrentRuns(t *testing.T) {
	var wg sync.WaitGroup
	results := make([]Result, 4)
	for i := range results {
		wg.Go(func() {
			results[i] = NewShell().Run(context.Background(), Spec{Dir: t.TempDir(), Script: []string{"seq 1 1000", "exit " + strconv.Itoa(i)}}, nil)
		})
	}
	wg.Wait()
	for i, r := range results {
		if exitCode(r) != strconv.Itoa(i) || r.Err != nil {
			t.Errorf("run %d: %+v", i, r)
		}
	}
}

// BenchmarkShellEcho measures a whole Run of `echo hi` and reports the time
// from Run to the first output line.
func BenchmarkShellEcho(b *testing.B) {
	ex, dir := NewShell(), b.TempDir()
	var first time.Duration
	for b.Loop() {
		start := time.Now()
		var once sync.Once
		res := ex.Run(context.Background(), Spec{Dir: dir, Script: []string{"echo hi"}}, func(contracts.Stream, string) {
			once.Do(func() { first += time.Since(start) })
		})
		if !res.Succeeded() {
			b.Fatalf("result %+v", res)
		}
	}
	b.ReportMetric(float64(first.Microseconds())/float64(b.N), "µs-to-first-line")
}

func TestShellCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	res, rec := run(t, NewShell(), ctx, Spec{Dir: dir, Script: []string{"touch ran"}})
	if !res.Canceled || res.ExitCode != nil || res.Err != nil || len(rec.lines) != 0 {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the script ran: %v", err)
	}
}
