package integration

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/internal/gittest"
)

// blackbox is a running server driven only through HTTP and the CLI.
type blackbox struct {
	t     *testing.T
	dir   string
	base  string
	token string
}

func (b *blackbox) request(method, path, token string, body []byte, header ...string) (int, []byte) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// api sends a request as the admin and decodes the JSON answer, failing
// unless the status is want.
func (b *blackbox) api(method, path string, body any, want int) map[string]any {
	b.t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			b.t.Fatal(err)
		}
	}
	code, out := b.request(method, path, b.token, data)
	if code != want {
		b.t.Fatalf("%s %s: %d %s, want %d", method, path, code, out, want)
	}
	var m map[string]any
	if len(bytes.TrimSpace(out)) > 0 && out[0] == '{' {
		if err := json.Unmarshal(out, &m); err != nil {
			b.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return m
}

// cli runs a client command against the server.
func (b *blackbox) cli(args ...string) (int, string, string) {
	b.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = b.dir
	cmd.Env = cleanEnv("ZEROCI_SERVER="+b.base, "ZEROCI_TOKEN="+b.token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			b.t.Fatalf("zeroci %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// build polls GET build until ok holds.
func (b *blackbox) build(repo string, n int, what string, ok func(map[string]any) bool) map[string]any {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last map[string]any
	for time.Now().Before(deadline) {
		last = b.api("GET", fmt.Sprintf("/api/v1/repos/%s/builds/%d", repo, n), nil, 200)
		if ok(last) {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("build %s#%d never got %s: %v", repo, n, what, last)
	return nil
}

func jobField(build map[string]any, id, field string) any {
	jobs, _ := build["jobs"].([]any)
	for _, j := range jobs {
		if m, _ := j.(map[string]any); m["id"] == id {
			return m[field]
		}
	}
	return nil
}

// sseLine is one log line event.
type sseLine struct {
	id   int
	text string
}

// followLog reads the log's SSE stream from after line `after`, until
// `event: end` or until stopAfter lines (0: no limit), when it drops the
// connection.
func (b *blackbox) followLog(path string, after, stopAfter int) (lines []sseLine, ended bool) {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.Itoa(after))
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b.t.Fatalf("log stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	var id int
	var event string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "end" {
				return lines, true
			}
			if data != nil {
				lines = append(lines, sseLine{id: id, text: strings.Join(data, "\n")})
				if stopAfter > 0 && len(lines) == stopAfter {
					return lines, false // drop the connection mid-stream
				}
			}
			event, data = "", nil
		case strings.HasPrefix(line, ":"): // keep-alive
		case strings.HasPrefix(line, "id:"):
			id, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "id:")))
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	b.t.Fatalf("log stream ended without event: end (%v)", sc.Err())
	return nil, false
}

// TestBlackBox is issue 6's acceptance test: the running binary driven only
// through HTTP and the CLI.
func TestBlackBox(t *testing.T) {
	dir := t.TempDir()
	src := gittest.PipelineRepo(t, `jobs:
  count:
    script: ['for i in $(seq 1 40); do echo "line $i"; sleep 0.05; done']
  gate:
    depends_on: [count]
    manual: true
    script: [echo approved]
`)
	slow := gittest.PipelineRepo(t, "jobs:\n  wait:\n    script: [sleep 300]\n")
	srv, base, token := singleServer(t, dir)
	b := &blackbox{t: t, dir: dir, base: base, token: token}

	// Repos: one by the API with a webhook secret, one by the CLI.
	b.api("POST", "/api/v1/repos", map[string]any{"name": "app", "url": src, "webhook_secret": "hook-secret"}, 201)
	if code, out, errOut := b.cli("repo", "add", "slow", slow); code != 0 {
		t.Fatalf("repo add: %d %s %s", code, out, errOut)
	}
	if code, out, _ := b.cli("repo", "ls"); code != 0 || !strings.Contains(out, "app") || !strings.Contains(out, "slow") {
		t.Fatalf("repo ls: %d %s", code, out)
	}

	// Trigger by the API; follow the log over SSE with a forced reconnect.
	created := b.api("POST", "/api/v1/repos/app/builds", map[string]any{}, 201)
	if created["number"] != 1.0 || created["status"] != "queued" {
		t.Fatalf("trigger: %v", created)
	}
	logPath := "/api/v1/repos/app/builds/1/jobs/count/log"
	b.build("app", 1, "count running", func(m map[string]any) bool {
		st := jobField(m, "count", "status")
		return st == "running" || st == "success"
	})
	first, ended := b.followLog(logPath, 0, 10)
	if ended || len(first) != 10 {
		t.Fatalf("first connection: %d lines, ended %v", len(first), ended)
	}
	rest, ended := b.followLog(logPath, first[len(first)-1].id, 0)
	if !ended {
		t.Fatal("the second connection did not end with event: end")
	}
	all := append(first, rest...)
	if len(all) != 40 {
		t.Fatalf("got %d lines over two connections, want 40: %v", len(all), all)
	}
	for i, l := range all {
		if l.id != i+1 || l.text != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("line %d: %+v (lost or repeated)", i+1, l)
		}
	}
	code, plain := b.request("GET", logPath, b.token, nil)
	if code != 200 || strings.Count(string(plain), "\n") != 40 || !strings.HasPrefix(string(plain), "line 1\nline 2\n") {
		t.Fatalf("plain log: %d %q", code, plain)
	}

	// Approve the manual job with the CLI.
	b.build("app", 1, "gate blocked", func(m map[string]any) bool { return jobField(m, "gate", "status") == "blocked" })
	if code, out, errOut := b.cli("build", "approve", "app", "1", "gate"); code != 0 {
		t.Fatalf("build approve: %d %s %s", code, out, errOut)
	}
	done := b.build("app", 1, "success", func(m map[string]any) bool { return m["status"] == "success" })
	if jobField(done, "gate", "status") != "success" {
		t.Fatalf("gate: %v", done)
	}
	if code, out, _ := b.cli("build", "show", "app", "1", "--json"); code != 0 || !strings.Contains(out, `"status":"success"`) && !strings.Contains(out, `"status": "success"`) {
		t.Fatalf("build show --json: %d %s", code, out)
	}

	// A signed webhook triggers build 2; its replay triggers nothing; a
	// forged one is refused.
	push := []byte(`{"ref":"refs/heads/main","after":"` + gittest.Git(t, src, "rev-parse", "HEAD") + `","pusher":{"name":"alice"}}`)
	mac := hmac.New(sha256.New, []byte("hook-secret"))
	mac.Write(push)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for range 2 {
		code, body := b.request("POST", "/api/v1/hooks/app", "", push, "X-Zeroci-Signature", sig, "X-Zeroci-Delivery", "d-1")
		if code/100 != 2 {
			t.Fatalf("signed webhook: %d %s", code, body)
		}
	}
	if code, body := b.request("POST", "/api/v1/hooks/app", "", push, "X-Zeroci-Signature", "sha256="+strings.Repeat("0", 64), "X-Zeroci-Delivery", "d-2"); code != 401 {
		t.Fatalf("forged webhook: %d %s", code, body)
	}
	b.build("app", 2, "triggered by the webhook", func(m map[string]any) bool { return m["event"] == "push" })
	if code, _ := b.request("GET", "/api/v1/repos/app/builds/3", b.token, nil); code != 404 {
		t.Fatalf("build 3 exists: a replayed or forged delivery triggered a build (%d)", code)
	}

	// Cancel a running build with the CLI.
	if code, out, errOut := b.cli("build", "trigger", "slow"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("build trigger: %d %q %s", code, out, errOut)
	}
	b.build("slow", 1, "wait running", func(m map[string]any) bool { return jobField(m, "wait", "status") == "running" })
	if code, out, errOut := b.cli("build", "cancel", "slow", "1"); code != 0 {
		t.Fatalf("build cancel: %d %s %s", code, out, errOut)
	}
	b.build("slow", 1, "canceled", func(m map[string]any) bool { return m["status"] == "canceled" })

	// Malformed requests: each a clear 4xx with {"error","code"}.
	big := []byte(`{"name":"x","url":"` + strings.Repeat("a", 1<<20) + `"}`)
	bad := []struct {
		method, path, token string
		body                []byte
		want                int
	}{
		{"GET", "/api/v1/repos", "", nil, 401},
		{"GET", "/api/v1/repos", "zci_not-a-token", nil, 401},
		{"POST", "/api/v1/repos", b.token, []byte(`{`), 400},
		{"POST", "/api/v1/repos", b.token, []byte(`[]`), 400},
		{"POST", "/api/v1/repos", b.token, []byte(``), 400},
		{"POST", "/api/v1/repos", b.token, []byte(`{"name":"ok","url":"/x","bogus":1}`), 400},
		{"POST", "/api/v1/repos", b.token, []byte(`{"name":5,"url":"/x"}`), 400},
		{"POST", "/api/v1/repos", b.token, []byte(`{"name":"Bad Name","url":"/x"}`), 400},
		{"POST", "/api/v1/repos", b.token, []byte(`{"name":"ok"}`), 400},
		{"POST", "/api/v1/repos", b.token, []byte(`{"name":"app","url":"/x"}`), 409},
		{"POST", "/api/v1/repos", b.token, []byte(`{"name":"ok","url":"/x","poll":"yes"}`), 400},
		{"POST", "/api/v1/repos", b.token, []byte(`{"name":"ok","url":"/x"} {}`), 400},
		{"POST", "/api/v1/repos", b.token, big, 413},
		{"GET", "/api/v1/repos/nope", b.token, nil, 404},
		{"GET", "/api/v1/repos/BAD!", b.token, nil, 400},
		{"DELETE", "/api/v1/repos/nope", b.token, nil, 404},
		{"POST", "/api/v1/repos/nope/builds", b.token, []byte(`{}`), 404},
		{"POST", "/api/v1/repos/app/builds", b.token, []byte(`{"params":{"1BAD":"x"}}`), 400},
		{"POST", "/api/v1/repos/app/builds", b.token, []byte(`{"ref":"-x"}`), 400},
		{"POST", "/api/v1/repos/app/builds", b.token, []byte(`{"ref":7}`), 400},
		{"GET", "/api/v1/repos/app/builds?limit=-1", b.token, nil, 400},
		{"GET", "/api/v1/repos/app/builds?status=done", b.token, nil, 400},
		{"GET", "/api/v1/repos/app/builds?before=x", b.token, nil, 400},
		{"GET", "/api/v1/repos/app/builds/0", b.token, nil, 400},
		{"GET", "/api/v1/repos/app/builds/abc", b.token, nil, 400},
		{"GET", "/api/v1/repos/app/builds/999", b.token, nil, 404},
		{"POST", "/api/v1/repos/app/builds/999/cancel", b.token, nil, 404},
		{"POST", "/api/v1/repos/app/builds/1/jobs/gate/approve", b.token, nil, 409},
		{"POST", "/api/v1/repos/app/builds/1/jobs/nope/approve", b.token, nil, 404},
		{"GET", "/api/v1/repos/app/builds/1/jobs/nope/log", b.token, nil, 404},
		{"GET", "/api/v1/repos/app/builds/1/artifacts/nope", b.token, nil, 404},
		{"PUT", "/api/v1/repos/app/secrets/TOKEN", b.token, []byte(`{"val":"x"}`), 400},
		{"PUT", "/api/v1/repos/app/secrets/bad-name!", b.token, []byte(`{"value":"x"}`), 400},
		{"POST", "/api/v1/tokens", b.token, []byte(`{"name":"t","scope":"root"}`), 400},
		{"GET", "/api/v1/events?since=-5", b.token, nil, 400},
		{"POST", "/api/v1/hooks/app", "", push, 401},
		{"POST", "/api/v1/hooks/nope", "", push, 404},
		{"PATCH", "/api/v1/repos/app", b.token, nil, 405},
	}
	for _, c := range bad {
		code, body := b.request(c.method, c.path, c.token, c.body)
		var e struct{ Error, Code string }
		if code != c.want || json.Unmarshal(body, &e) != nil || e.Error == "" || e.Code == "" {
			t.Errorf("%s %s: %d %.200s, want %d with {error, code}", c.method, c.path, code, body, c.want)
		}
	}
	if repos := b.api("GET", "/api/v1/repos/ok", nil, 404); repos == nil {
		t.Error("a refused create left a repo behind")
	}

	srv.signal(os.Interrupt)
	if code := srv.wait(60 * time.Second); code != 0 {
		t.Errorf("server exit %d", code)
	}
}
