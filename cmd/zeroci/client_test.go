package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/internal/config"
	"github.com/zeroci/zeroci/internal/gittest"
	"github.com/zeroci/zeroci/internal/server"
	"github.com/zeroci/zeroci/modules/moduletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cliEnv is a whole zeroci server in this process (every module, HTTP on a
// free loopback port) and its admin token, for the client commands.
type cliEnv struct {
	t     *testing.T
	base  string // http://127.0.0.1:PORT
	admin string
}

// newCLIEnv starts a server like modules/api's newEnv does.
func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Buildscript.AllowLocal = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, cfg, moduletest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return &cliEnv{t: t, base: "http://" + srv.HTTPAddr().String(), admin: strings.TrimSpace(string(tok))}
}

// result is what one command printed and its exit code.
type result struct {
	out, err string
	code     int
}

// zeroci runs the command line args against the server as the admin.
func (e *cliEnv) zeroci(args ...string) result {
	e.t.Helper()
	return runCLI(e.t, "", append(args, "--server", e.base, "--token", e.admin)...)
}

// runCLI runs the zeroci command tree with args and stdin, like main does.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(zerolog.Nop())
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, err := root.ExecuteContextC(ctx)
	code := report(&errb, cmd, err)
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	return result{out: out.String(), err: errb.String(), code: code}
}

// ok fails the test unless r exited 0.
func (r result) ok(t *testing.T, what string) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.out, r.err)
	}
	return r
}

// fails checks r exited code with one stderr line containing want.
func (r result) fails(t *testing.T, what string, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.err, want) || strings.Count(r.err, "\n") != 1 || !strings.HasPrefix(r.err, "zeroci: ") {
		t.Fatalf("%s: exit %d, stderr %q; want exit %d and one line with %q", what, r.code, r.err, code, want)
	}
}

// pipelineRepo is a repository whose pipeline is yaml.
func pipelineRepo(t *testing.T, yaml string) string {
	return gittest.Repo(t, map[string]string{".zeroci/pipeline.yaml": yaml})
}

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in time", what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

// showBuild reads a build through `build show --json`.
func (e *cliEnv) showBuild(repo, number string) buildJSON {
	e.t.Helper()
	r := e.zeroci("build", "show", repo, number, "--json").ok(e.t, "build show --json")
	var b buildJSON
	if err := json.Unmarshal([]byte(r.out), &b); err != nil {
		e.t.Fatalf("build show --json: %v in %q", err, r.out)
	}
	return b
}

func TestClientRepo(t *testing.T) {
	e := newCLIEnv(t)
	src := pipelineRepo(t, "jobs: {hello: {script: [echo hi]}}\n")

	r := e.zeroci("repo", "add", "alpha", src, "--branch", "main", "--webhook-secret", "s3cret").ok(t, "repo add")
	if r.out != fmt.Sprintf("repo alpha added (%s, branch main)\n", src) {
		t.Errorf("repo add printed %q", r.out)
	}
	r = e.zeroci("repo", "add", "beta", src, "--poll", "--json").ok(t, "repo add --json")
	var beta repoJSON
	if err := json.Unmarshal([]byte(r.out), &beta); err != nil || beta.Name != "beta" || beta.PollSeconds == 0 {
		t.Errorf("repo add --json: %+v %v in %q", beta, err, r.out)
	}
	e.zeroci("repo", "add", "alpha", src).fails(t, "repo add twice", 1, "(conflict)")
	e.zeroci("repo", "add", "Bad Name", src).fails(t, "repo add bad name", 1, "(invalid_argument)")
	e.zeroci("repo", "add", "only-name").fails(t, "repo add without url", 2, "accepts 2 arg(s)")

	r = e.zeroci("repo", "ls").ok(t, "repo ls")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "alpha ") ||
		!strings.Contains(lines[1], " yes ") || !strings.HasPrefix(lines[2], "beta ") || !strings.Contains(lines[2], src) {
		t.Errorf("repo ls:\n%s", r.out)
	}
	r = e.zeroci("repo", "ls", "--json").ok(t, "repo ls --json")
	var repos []repoJSON
	if err := json.Unmarshal([]byte(r.out), &repos); err != nil || len(repos) != 2 {
		t.Errorf("repo ls --json: %v %q", err, r.out)
	}

	e.zeroci("repo", "rm", "beta").ok(t, "repo rm")
	e.zeroci("repo", "rm", "beta").fails(t, "repo rm again", 1, "(not_found)")
	r = e.zeroci("repo", "ls").ok(t, "repo ls after rm")
	if strings.Contains(r.out, "beta") {
		t.Errorf("repo ls after rm:\n%s", r.out)
	}
}

// TestClientServerAndToken: --server, ZEROCI_SERVER, --token, ZEROCI_TOKEN
// and ./zeroci-data/admin.token, in that order; errors are one line.
func TestClientServerAndToken(t *testing.T) {
	e := newCLIEnv(t)
	dir := t.TempDir()
	t.Chdir(dir)

	runCLI(t, "", "repo", "ls", "--server", e.base).fails(t, "no token", 1, "(unauthenticated)")
	if err := os.MkdirAll("zeroci-data", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("zeroci-data", "admin.token"), []byte(e.admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, "", "repo", "ls", "--server", e.base).ok(t, "token from ./zeroci-data/admin.token")

	t.Setenv(envServer, e.base)
	runCLI(t, "", "repo", "ls").ok(t, "server from "+envServer)
	t.Setenv(envToken, "zci_wrong")
	runCLI(t, "", "repo", "ls").fails(t, "a wrong token from "+envToken, 1, "unknown token (unauthenticated)")
	runCLI(t, "", "repo", "ls", "--token", e.admin).ok(t, "--token over "+envToken)

	runCLI(t, "", "repo", "ls", "--server", "http://127.0.0.1:1").fails(t, "no server", 1, "cannot reach the server at http://127.0.0.1:1")
	runCLI(t, "", "repo", "ls", "--server", "ftp://x").fails(t, "bad --server", 2, "want an http:// or https:// URL")
}

func TestClientSecretsAndTokens(t *testing.T) {
	e := newCLIEnv(t)
	src := pipelineRepo(t, "jobs: {hello: {script: [echo hi]}}\n")
	e.zeroci("repo", "add", "app", src).ok(t, "repo add")

	for _, name := range []string{"zeta", "alpha"} {
		r := runCLI(t, "value-of-"+name+"\n", "secret", "set", "app", name, "--server", e.base, "--token", e.admin).ok(t, "secret set")
		if r.out != "secret "+name+" of app set\n" {
			t.Errorf("secret set printed %q", r.out)
		}
	}
	r := e.zeroci("secret", "ls", "app").ok(t, "secret ls")
	if r.out != "alpha\nzeta\n" || strings.Contains(r.out, "value") {
		t.Errorf("secret ls: %q", r.out)
	}
	r = e.zeroci("secret", "ls", "app", "--json").ok(t, "secret ls --json")
	if names, err := secretNames([]byte(r.out)); err != nil || len(names) != 2 {
		t.Errorf("secret ls --json: %q", r.out)
	}
	e.zeroci("secret", "ls", "nope").fails(t, "secret ls of an unknown repo", 1, "(not_found)")

	r = e.zeroci("token", "create", "reader", "--scope", "read").ok(t, "token create")
	reader := strings.TrimSpace(r.out)
	if strings.Count(r.out, "\n") != 1 || reader == "" || !strings.Contains(r.err, "token reader (scope read)") {
		t.Fatalf("token create: %q %q", r.out, r.err)
	}
	runCLI(t, "", "repo", "ls", "--server", e.base, "--token", reader).ok(t, "repo ls with a read token")
	runCLI(t, "", "repo", "rm", "app", "--server", e.base, "--token", reader).fails(t, "repo rm with a read token", 1, "(permission_denied)")
	runCLI(t, "", "token", "create", "x", "--server", e.base, "--token", reader).fails(t, "token create with a read token", 1, "(permission_denied)")
	e.zeroci("token", "create", "x", "--scope", "root").fails(t, "bad scope", 2, `--scope "root"`)

	r = e.zeroci("token", "create", "ci", "--scope", "write", "--json").ok(t, "token create --json")
	var tok struct{ Name, Scope, Token string }
	if err := json.Unmarshal([]byte(r.out), &tok); err != nil || tok.Name != "ci" || tok.Scope != "write" || tok.Token == "" {
		t.Errorf("token create --json: %q", r.out)
	}
}

// colourPipeline prints a coloured line and a line with a carriage return.
const colourPipeline = `jobs:
  hello:
    script:
      - printf '\033[31mred\033[0m\n'
      - printf 'progress 10%%\rprogress 100%%\n'
  world:
    script: [echo from-world]
`

func TestClientBuildWait(t *testing.T) {
	e := newCLIEnv(t)
	e.zeroci("repo", "add", "good", pipelineRepo(t, colourPipeline)).ok(t, "repo add good")
	e.zeroci("repo", "add", "bad", pipelineRepo(t, "jobs:\n  a: {script: [echo before, exit 3]}\n  b: {depends_on: [a], script: [echo never]}\n")).ok(t, "repo add bad")

	r := e.zeroci("build", "trigger", "good", "--wait").ok(t, "trigger --wait of a good build")
	for _, want := range []string{"1\n", "[hello] \x1b[31mred\x1b[0m\n", "[hello] progress 10%\rprogress 100%\n", "[world] from-world\n"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("trigger --wait: stdout has no %q:\n%q", want, r.out)
		}
	}
	if !strings.HasPrefix(r.out, "1\n") || !strings.Contains(r.err, "build good #1 success") {
		t.Errorf("trigger --wait: %q %q", r.out, r.err)
	}

	r = e.zeroci("build", "trigger", "bad", "--wait")
	if r.code != 1 || !strings.Contains(r.out, "[a] before\n") || strings.Contains(r.out, "never") ||
		!strings.Contains(r.err, "[a] failure (exit 3)") || !strings.Contains(r.err, "[b] skipped") ||
		!strings.HasSuffix(r.err, "zeroci: build bad #1: failure\n") {
		t.Errorf("trigger --wait of a failing build: exit %d\n%s\n%s", r.code, r.out, r.err)
	}

	r = e.zeroci("build", "trigger", "bad", "--wait", "--json")
	var b buildJSON
	if r.code != 1 || json.Unmarshal([]byte(r.out), &b) != nil || b.Number != 2 || b.Status != "failure" {
		t.Errorf("trigger --wait --json: exit %d %q %q", r.code, r.out, r.err)
	}
	e.zeroci("build", "trigger", "nope", "--wait").fails(t, "trigger an unknown repo", 1, "(not_found)")
	e.zeroci("build", "trigger", "good", "--param", "novalue").fails(t, "bad --param", 2, "want K=V")
}

const manualPipeline = `jobs:
  build:
    script: [echo "built $ZEROCI_BUILD_NUMBER", 'echo "param=$WHO"']
  deploy:
    depends_on: [build]
    manual: true
    script: [echo deployed]
`

func TestClientBuildCommands(t *testing.T) {
	e := newCLIEnv(t)
	e.zeroci("repo", "add", "app", pipelineRepo(t, manualPipeline)).ok(t, "repo add")

	r := e.zeroci("build", "trigger", "app", "--param", "WHO=me").ok(t, "build trigger")
	if r.out != "1\n" {
		t.Fatalf("build trigger printed %q", r.out)
	}
	waitFor(t, "deploy blocked", func() bool {
		b := e.showBuild("app", "1")
		return len(b.Jobs) == 2 && b.Jobs[1].Status == "blocked" && b.Jobs[0].Status == "success"
	})
	r = e.zeroci("build", "show", "app", "1").ok(t, "build show")
	for _, want := range [][]string{{"build:", "app", "#1"}, {"status:", "running"}, {"param:", "WHO=me"}, {"event:", "manual", "by", "admin"},
		{"JOB", "STATUS", "EXIT", "DURATION", "DEPENDS", "ON", "REASON"}} {
		if !containsLine(r.out, want...) {
			t.Errorf("build show has no line %q:\n%s", want, r.out)
		}
	}
	if !containsLine(r.out, "build", "success", "0") || !containsLine(r.out, "deploy", "blocked", "-", "build") {
		t.Errorf("build show jobs:\n%s", r.out)
	}

	r = e.zeroci("logs", "app", "1", "build").ok(t, "logs")
	if r.out != "built 1\nparam=me\n" {
		t.Errorf("logs: %q", r.out)
	}
	r = e.zeroci("logs", "app", "1", "build", "--timestamps").ok(t, "logs --timestamps")
	if !strings.HasSuffix(strings.SplitN(r.out, "\n", 2)[0], " built 1") || !strings.HasPrefix(r.out, "20") {
		t.Errorf("logs --timestamps: %q", r.out)
	}
	e.zeroci("logs", "app", "1", "nojob").fails(t, "logs of an unknown job", 1, "(not_found)")
	e.zeroci("logs", "app", "1", "nojob", "-f").fails(t, "logs -f of an unknown job", 1, `build app #1 has no job "nojob" (jobs: build, deploy)`)
	e.zeroci("logs", "app", "x", "build").fails(t, "logs with a bad number", 2, `build number "x"`)

	r = e.zeroci("build", "approve", "app", "1", "deploy").ok(t, "build approve")
	if r.out != "job deploy of build app #1 approved\n" {
		t.Errorf("build approve printed %q", r.out)
	}
	e.zeroci("build", "approve", "app", "1", "build").fails(t, "approve a job that is not blocked", 1, "(")
	waitFor(t, "build 1 success", func() bool { return e.showBuild("app", "1").Status == "success" })
	r = e.zeroci("logs", "app", "1", "deploy", "-f").ok(t, "logs -f of a finished job")
	if r.out != "deployed\n" {
		t.Errorf("logs -f: %q", r.out)
	}

	r = e.zeroci("build", "retry", "app", "1").ok(t, "build retry")
	if r.out != "2\n" {
		t.Errorf("build retry printed %q", r.out)
	}
	waitFor(t, "build 2 blocked", func() bool {
		b := e.showBuild("app", "2")
		return len(b.Jobs) == 2 && b.Jobs[1].Status == "blocked"
	})
	r = e.zeroci("build", "cancel", "app", "2").ok(t, "build cancel")
	if !strings.HasPrefix(r.out, "build app #2: ") {
		t.Errorf("build cancel printed %q", r.out)
	}
	waitFor(t, "build 2 canceled", func() bool { return e.showBuild("app", "2").Status == "canceled" })
	e.zeroci("build", "cancel", "app", "9").fails(t, "cancel an unknown build", 1, "(not_found)")

	r = e.zeroci("build", "ls", "app").ok(t, "build ls")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NUMBER") || !containsLine(lines[1], "2", "canceled", "main") ||
		!containsLine(lines[2], "1", "success", "main") {
		t.Errorf("build ls:\n%s", r.out)
	}
	r = e.zeroci("build", "ls", "app", "--status", "success", "--json").ok(t, "build ls --json")
	var builds []buildJSON
	if err := json.Unmarshal([]byte(r.out), &builds); err != nil || len(builds) != 1 || builds[0].Number != 1 {
		t.Errorf("build ls --status success --json: %v %q", err, r.out)
	}
	e.zeroci("build", "ls", "app", "--status", "nope").fails(t, "build ls bad status", 1, "(invalid_argument)")
}

// containsLine reports whether a line of text has all fields, in order,
// as whitespace-separated words.
func containsLine(text string, fields ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		i := 0
		for _, w := range words {
			if i < len(fields) && w == fields[i] {
				i++
			}
		}
		if i == len(fields) && len(words) > 0 && words[0] == fields[0] {
			return true
		}
	}
	return false
}

func TestClientEvents(t *testing.T) {
	e := newCLIEnv(t)
	src := pipelineRepo(t, "jobs: {hello: {script: [echo hi]}}\n")
	e.zeroci("repo", "add", "one", src).ok(t, "repo add one")
	e.zeroci("repo", "add", "two", src).ok(t, "repo add two")

	r := e.zeroci("events", "--json").ok(t, "events --json")
	var evs []eventJSON
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		var ev eventJSON
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events --json: %v in %q", err, line)
		}
		evs = append(evs, ev)
	}
	var created []eventJSON
	for _, ev := range evs {
		if ev.Type == "repo.created" {
			created = append(created, ev)
		}
	}
	if len(created) != 2 || created[0].Repo != "one" || created[1].Repo != "two" {
		t.Fatalf("events --json: %q", r.out)
	}

	since := fmt.Sprint(created[0].Seq)
	r = e.zeroci("events", "--since", since).ok(t, "events --since")
	if strings.Contains(r.out, "\trepo.created    \tone") || !strings.Contains(r.out, fmt.Sprintf("%d\t", created[1].Seq)) ||
		!strings.Contains(r.out, "repo.created") || !strings.Contains(r.out, "\ttwo\n") {
		t.Errorf("events --since %s:\n%s", since, r.out)
	}
	r = e.zeroci("events", "--repo", "one").ok(t, "events --repo")
	if strings.Contains(r.out, "two") || !strings.Contains(r.out, "one") {
		t.Errorf("events --repo one:\n%s", r.out)
	}
	e.zeroci("events", "--since", "-1").fails(t, "bad --since", 2, "--since -1")

	// -f follows until the command's context ends: trigger a build and
	// stop once its build.finished came.
	e.zeroci("build", "trigger", "two", "--wait").ok(t, "trigger --wait")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		root := newRootCmd(zerolog.Nop())
		root.SetArgs([]string{"events", "-f", "--repo", "two", "--server", e.base, "--token", e.admin})
		root.SetOut(pw)
		root.SetErr(io.Discard)
		_, err := root.ExecuteContextC(ctx)
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "build.finished") {
			cancel()
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Errorf("events -f: %v", err)
	}
	if ctx.Err() == nil {
		t.Errorf("events -f ended without build.finished")
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

// cutProxy forwards requests to a server; the first log event stream it
// carries is cut (the connection aborted) after cut events.
type cutProxy struct {
	target string
	cut    int

	mu          sync.Mutex
	streams     int
	lastEventID []string // the Last-Event-ID of each log stream request
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	sse := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") && strings.HasSuffix(r.URL.Path, "/log")
	if !sse {
		io.Copy(w, resp.Body)
		return
	}
	p.mu.Lock()
	p.streams++
	first := p.streams == 1
	p.lastEventID = append(p.lastEventID, r.Header.Get("Last-Event-ID"))
	p.mu.Unlock()
	br := bufio.NewReader(resp.Body)
	events := 0
	for {
		line, err := br.ReadString('\n')
		w.Write([]byte(line))
		w.(http.Flusher).Flush()
		if err != nil {
			return
		}
		if line == "\n" {
			events++
			if first && events == p.cut {
				panic(http.ErrAbortHandler) // drop the connection mid-stream
			}
		}
	}
}

func TestClientLogsFollowResumes(t *testing.T) {
	e := newCLIEnv(t)
	const lines = 300
	pipeline := fmt.Sprintf("jobs:\n  count:\n    script: ['i=1; while [ $i -le %d ]; do echo \"line $i\"; i=$((i+1)); done']\n", lines)
	e.zeroci("repo", "add", "app", pipelineRepo(t, pipeline)).ok(t, "repo add")
	e.zeroci("build", "trigger", "app").ok(t, "build trigger")
	waitFor(t, "job count planned", func() bool { return len(e.showBuild("app", "1").Jobs) == 1 })

	p := &cutProxy{target: e.base, cut: 40}
	proxy := httptest.NewServer(p)
	defer proxy.Close()
	r := runCLI(t, "", "logs", "app", "1", "count", "-f", "--server", proxy.URL, "--token", e.admin).ok(t, "logs -f through a proxy that cuts")

	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if r.out != want.String() {
		t.Errorf("logs -f: got %d lines, want %d in order with none repeated:\n%s", strings.Count(r.out, "\n"), lines, r.out)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lastEventID) < 2 || p.lastEventID[0] != "" || p.lastEventID[1] == "" {
		t.Errorf("the stream was not resumed with Last-Event-ID: %q", p.lastEventID)
	}
}

func TestReadSSE(t *testing.T) {
	in := ": hello\n\nid: 1\ndata: a\n\nid: 2\ndata: b\ndata: c\r\n\nevent: end\ndata:\n\nid: 3\ndata: cut"
	var got []string
	err := readSSE(strings.NewReader(in), func(ev sseEvent) error {
		got = append(got, fmt.Sprintf("%s|%s|%q|%v", ev.ID, ev.Event, ev.Data, ev.Comment))
		return nil
	})
	want := []string{`||"hello"|true`, `1||"a"|false`, `2||"b\nc"|false`, `|end|""|false`}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("readSSE: %q %v, want %q", got, err, want)
	}
}

func TestCompletion(t *testing.T) {
	e := newCLIEnv(t)
	src := pipelineRepo(t, "jobs: {hello: {script: [echo hi]}}\n")
	e.zeroci("repo", "add", "alpha", src).ok(t, "repo add")
	e.zeroci("repo", "add", "beta", src).ok(t, "repo add")
	r := runCLI(t, "", "__complete", "build", "ls", "--server", e.base, "--token", e.admin, "a")
	if r.code != 0 || !strings.HasPrefix(r.out, "alpha\n:4\n") {
		t.Errorf("completion of a repo: %d %q %q", r.code, r.out, r.err)
	}
	r = runCLI(t, "", "completion", "bash").ok(t, "completion bash")
	if !strings.Contains(r.out, "__start_zeroci") {
		t.Errorf("completion bash: %.200q", r.out)
	}
}

// TestWaitForJob: logs -f waits while the build is queued, then finds the
// job (or says which jobs there are).
func TestWaitForJob(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) <= 3 {
			io.WriteString(w, `{"repo":"app","number":4,"status":"queued","jobs":[]}`)
			return
		}
		io.WriteString(w, `{"repo":"app","number":4,"status":"running","jobs":[{"id":"build","status":"running"}]}`)
	}))
	defer srv.Close()
	c := &apiClient{base: srv.URL, http: srv.Client(), out: io.Discard, errOut: io.Discard}
	if err := c.waitForJob(context.Background(), "app", 4, "build"); err != nil || calls.Load() != 4 {
		t.Fatalf("waitForJob = %v after %d reads, want nil after 4", err, calls.Load())
	}
	if err := c.waitForJob(context.Background(), "app", 4, "test"); err == nil || !strings.Contains(err.Error(), `no job "test" (jobs: build)`) {
		t.Fatalf("waitForJob of a missing job = %v", err)
	}
}
