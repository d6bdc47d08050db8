package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeroci/zeroci/internal/gittest"
)

// TestAPIReplicas runs two api processes (each with a runner) against one
// set of modules in a third process, over tcp: what one replica creates
// the other serves, a webhook delivery sent to both triggers one build, and
// a job's log follows over SSE from the replica that did not trigger it.
func TestAPIReplicas(t *testing.T) {
	dir := t.TempDir()
	src := gittest.PipelineRepo(t, "jobs:\n  hello:\n    script: ['for i in 1 2 3; do echo \"hello $i\"; done']\n")
	head := gittest.Git(t, src, "rev-parse", "HEAD")

	config := newCluster(t, dir, "buildscript: {allow_local: true}\n").config
	env := cleanEnv()
	core := start(t, "core", dir, env, "server", "--config", config("core"),
		"--modules", "eventhub,datastore,blob,logging,buildscript", "--http", "127.0.0.1:0")
	waitStatus(t, core.httpBase()+"/readyz", 200, 60*time.Second)
	apiA := start(t, "api-a", dir, env, "server", "--config", config("a"), "--modules", "api,jobs", "--http", "127.0.0.1:0")
	baseA := apiA.httpBase()
	waitStatus(t, baseA+"/readyz", 200, 60*time.Second)
	apiB := start(t, "api-b", dir, env, "server", "--config", config("b"), "--modules", "api,jobs", "--http", "127.0.0.1:0")
	baseB := apiB.httpBase()
	waitStatus(t, baseB+"/readyz", 200, 60*time.Second)

	// The first replica made the admin token; the second made none.
	tok, err := os.ReadFile(filepath.Join(dir, "a", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b", "admin.token")); err == nil {
		t.Fatal("the second api replica wrote another admin token")
	}
	a := &blackbox{t: t, dir: dir, base: baseA, token: strings.TrimSpace(string(tok))}
	b := &blackbox{t: t, dir: dir, base: baseB, token: a.token}

	a.api("POST", "/api/v1/repos", map[string]any{"name": "app", "url": src, "webhook_secret": "s"}, 201)
	if got := b.api("GET", "/api/v1/repos/app", nil, 200); got["url"] != src {
		t.Fatalf("replica b sees %v", got)
	}

	// One delivery, sent to both replicas (a retry reaching another one).
	push := []byte(`{"ref":"refs/heads/main","after":"` + head + `"}`)
	mac := hmac.New(sha256.New, []byte("s"))
	mac.Write(push)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for _, r := range []*blackbox{a, b, a} {
		if code, body := r.request("POST", "/api/v1/hooks/app", "", push, "X-Zeroci-Signature", sig, "X-Zeroci-Delivery", "one"); code/100 != 2 {
			t.Fatalf("webhook to %s: %d %s", r.base, code, body)
		}
	}
	b.build("app", 1, "success", func(m map[string]any) bool { return m["status"] == "success" })
	if code, _ := a.request("GET", "/api/v1/repos/app/builds/2", a.token, nil); code != 404 {
		t.Fatalf("build 2 exists (%d): one delivery triggered twice", code)
	}
	// Triggered through a, its log read through b.
	created := a.api("POST", "/api/v1/repos/app/builds", map[string]any{}, 201)
	n := int(created["number"].(float64))
	b.build("app", n, "success", func(m map[string]any) bool { return m["status"] == "success" })
	lines, ended := b.followLog(fmt.Sprintf("/api/v1/repos/app/builds/%d/jobs/hello/log", n), 0, 0)
	if !ended || len(lines) != 3 || lines[2].text != "hello 3" {
		t.Fatalf("log through replica b: %v ended=%v", lines, ended)
	}

	for _, p := range []*proc{apiA, apiB, core} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(60 * time.Second); code != 0 {
			t.Errorf("%s exit %d after SIGTERM", p.name, code)
		}
	}
}
