package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gittest"
)

// resRepo is a repository as GET /api/v1/repos/{repo} shows it.
type resRepo struct {
	Name             string    `json:"name"`
	URL              string    `json:"url"`
	DefaultBranch    string    `json:"default_branch"`
	Poll             bool      `json:"poll"`
	PollSeconds      int64     `json:"poll_seconds"`
	HasWebhookSecret bool      `json:"has_webhook_secret"`
	CreatedAt        time.Time `json:"created_at"`
}

// resPipeline is a pipeline with a job that makes an artifact, and a
// manual job after it.
const resPipeline = `jobs:
  build:
    script:
      - mkdir -p out
      - echo built > out/result.txt
      - echo "param=$ZEROCI_BUILD_NUMBER"
    artifacts: [{id: bin, paths: [out/]}]
  deploy:
    depends_on: [build]
    manual: true
    script: [echo deployed]
`

// resWaitBuild polls GET build until done says so, or fails the test at
// the deadline.
func resWaitBuild(t *testing.T, e *env, repo string, number int64, what string, done func(contracts.Build) bool) contracts.Build {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	path := "/api/v1/repos/" + repo + "/builds/" + strconv.FormatInt(number, 10)
	var b contracts.Build
	for {
		e.json("GET", path, nil, 200, &b)
		if done(b) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("build %s#%d: not %s in time: %+v", repo, number, what, b)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

func resJob(b contracts.Build, id string) contracts.Job {
	for _, j := range b.Jobs {
		if j.ID == id {
			return j
		}
	}
	return contracts.Job{}
}

// TestResourcesHappyPath walks every resource route with valid input.
func TestResourcesHappyPath(t *testing.T) {
	e := newEnv(t)
	src := gittest.Repo(t, map[string]string{".zeroci/pipeline.yaml": resPipeline})

	// Repositories.
	var repo resRepo
	e.json("POST", "/api/v1/repos", map[string]any{"name": "app", "url": src, "webhook_secret": "s3cret"}, 201, &repo)
	if repo.Name != "app" || repo.URL != src || repo.DefaultBranch != "main" || !repo.HasWebhookSecret || repo.Poll || repo.CreatedAt.IsZero() {
		t.Fatalf("created repo: %+v", repo)
	}
	var polled resRepo
	e.json("POST", "/api/v1/repos", map[string]any{"name": "polled", "url": src, "poll": true, "default_branch": "main"}, 201, &polled)
	if !polled.Poll || polled.PollSeconds != contracts.DefaultPollSeconds {
		t.Fatalf("polled repo: %+v", polled)
	}
	e.json("POST", "/api/v1/repos", map[string]any{"name": "zz-gone", "url": src}, 201, nil)
	if code, body := e.do("POST", "/api/v1/repos", e.admin, map[string]any{"name": "app", "url": src}); code != 409 {
		t.Fatalf("duplicate repo: %d %s", code, body)
	}
	var got resRepo
	e.json("GET", "/api/v1/repos/app", nil, 200, &got)
	if got.Name != "app" || got.URL != src {
		t.Fatalf("get repo: %+v", got)
	}
	var list []resRepo
	e.json("GET", "/api/v1/repos", nil, 200, &list)
	if len(list) != 3 || list[0].Name != "app" || list[1].Name != "polled" || list[2].Name != "zz-gone" {
		t.Fatalf("list repos: %+v", list)
	}
	// Paging: limit=1 gives a next link; after= continues.
	req, _ := http.NewRequest("GET", e.base+"/api/v1/repos?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if link := resp.Header.Get("Link"); !strings.Contains(link, "after=app") || !strings.Contains(link, `rel="next"`) {
		t.Fatalf("repos page 1 Link: %q", link)
	}
	e.json("GET", "/api/v1/repos?limit=1&after=app", nil, 200, &list)
	if len(list) != 1 || list[0].Name != "polled" {
		t.Fatalf("repos page 2: %+v", list)
	}
	if code, body := e.do("DELETE", "/api/v1/repos/zz-gone", e.admin, nil); code != 204 || len(body) != 0 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body := e.do("GET", "/api/v1/repos/zz-gone", e.admin, nil); code != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Fatalf("deleted repo: %d %s", code, body)
	}

	// Secrets.
	if code, body := e.do("PUT", "/api/v1/repos/app/secrets/DEPLOY_TOKEN", e.admin, map[string]any{"value": "hunter2"}); code != 204 {
		t.Fatalf("set secret: %d %s", code, body)
	}
	if code, body := e.do("PUT", "/api/v1/repos/app/secrets/API_KEY", e.admin, map[string]any{"value": "k"}); code != 204 {
		t.Fatalf("set secret: %d %s", code, body)
	}
	code, body := e.do("GET", "/api/v1/repos/app/secrets", e.admin, nil)
	if code != 200 || string(bytes.TrimSpace(body)) != `["API_KEY","DEPLOY_TOKEN"]` || strings.Contains(string(body), "hunter2") {
		t.Fatalf("list secrets: %d %s", code, body)
	}

	// A build: trigger, run to the manual job, approve, success.
	var b contracts.Build
	e.json("POST", "/api/v1/repos/app/builds", map[string]any{"ref": "main", "params": map[string]string{"MODE": "fast"}}, 201, &b)
	if b.Number != 1 || b.Repo != "app" || b.Status != contracts.BuildStatusQueued || b.Event != contracts.TriggerManual || b.User != "admin" || b.Ref != "main" || b.Params["MODE"] != "fast" {
		t.Fatalf("triggered: %+v", b)
	}
	b = resWaitBuild(t, e, "app", 1, "waiting for approval", func(b contracts.Build) bool {
		return resJob(b, "deploy").Status == contracts.JobStatusBlocked && resJob(b, "build").Status == contracts.JobStatusSuccess
	})
	if len(b.Commit) != 40 || resJob(b, "deploy").Reason == "" {
		t.Fatalf("blocked build: %+v", b)
	}

	// The artifact of the finished job.
	resCheckArtifact(t, e, "/api/v1/repos/app/builds/1/artifacts/bin", "out/result.txt", "built\n")
	if code, body := e.do("GET", "/api/v1/repos/app/builds/1/artifacts/nope", e.admin, nil); code != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Fatalf("missing artifact: %d %s", code, body)
	}

	e.json("POST", "/api/v1/repos/app/builds/1/jobs/deploy/approve", nil, 200, &b)
	if b.Number != 1 {
		t.Fatalf("approve: %+v", b)
	}
	b = resWaitBuild(t, e, "app", 1, "finished", func(b contracts.Build) bool { return b.Status.Terminal() })
	if b.Status != contracts.BuildStatusSuccess || resJob(b, "deploy").Status != contracts.JobStatusSuccess {
		t.Fatalf("approved build: %+v", b)
	}
	// Approving again: the job is no longer blocked.
	if code, body := e.do("POST", "/api/v1/repos/app/builds/1/jobs/deploy/approve", e.admin, nil); code != 409 || !strings.Contains(string(body), `"code":"conflict"`) {
		t.Fatalf("approve twice: %d %s", code, body)
	}

	// Retry makes build 2; cancel it while it waits for approval.
	e.json("POST", "/api/v1/repos/app/builds/1/retry", nil, 201, &b)
	if b.Number != 2 || b.RetryOf != 1 {
		t.Fatalf("retry: %+v", b)
	}
	resWaitBuild(t, e, "app", 2, "blocked", func(b contracts.Build) bool { return resJob(b, "deploy").Status == contracts.JobStatusBlocked })
	e.json("POST", "/api/v1/repos/app/builds/2/cancel", map[string]any{}, 200, &b)
	b = resWaitBuild(t, e, "app", 2, "canceled", func(b contracts.Build) bool { return b.Status.Terminal() })
	if b.Status != contracts.BuildStatusCanceled {
		t.Fatalf("canceled build: %+v", b)
	}

	// Lists: newest first, filters, paging.
	var builds []contracts.Build
	e.json("GET", "/api/v1/repos/app/builds", nil, 200, &builds)
	if len(builds) != 2 || builds[0].Number != 2 || builds[1].Number != 1 {
		t.Fatalf("list builds: %+v", builds)
	}
	e.json("GET", "/api/v1/repos/app/builds?status=success", nil, 200, &builds)
	if len(builds) != 1 || builds[0].Number != 1 {
		t.Fatalf("success builds: %+v", builds)
	}
	e.json("GET", "/api/v1/repos/app/builds?limit=1&before=2", nil, 200, &builds)
	if len(builds) != 1 || builds[0].Number != 1 {
		t.Fatalf("builds before 2: %+v", builds)
	}
	e.json("GET", "/api/v1/repos/polled/builds", nil, 200, &builds)
	if builds == nil || len(builds) != 0 {
		t.Fatalf("no builds is an empty array: %#v", builds)
	}

	// Tokens: a read token reads, and is refused changes.
	var tok struct {
		Name      string    `json:"name"`
		Scope     string    `json:"scope"`
		Token     string    `json:"token"`
		CreatedAt time.Time `json:"created_at"`
	}
	e.json("POST", "/api/v1/tokens", map[string]any{"name": "reader", "scope": "read"}, 201, &tok)
	if tok.Name != "reader" || tok.Scope != "read" || !strings.HasPrefix(tok.Token, "zci_") || tok.CreatedAt.IsZero() {
		t.Fatalf("token: %+v", tok)
	}
	if code, body := e.do("GET", "/api/v1/repos/app/builds/1", tok.Token, nil); code != 200 {
		t.Fatalf("read with a read token: %d %s", code, body)
	}
	if code, body := e.do("POST", "/api/v1/repos/app/builds", tok.Token, map[string]any{}); code != 403 || !strings.Contains(string(body), `"code":"permission_denied"`) {
		t.Fatalf("write with a read token: %d %s", code, body)
	}
	if code, body := e.do("POST", "/api/v1/tokens", tok.Token, map[string]any{"name": "x"}); code != 403 {
		t.Fatalf("token create with a read token: %d %s", code, body)
	}
	// A write token triggers; the build's user is the token's name.
	e.json("POST", "/api/v1/tokens", map[string]any{"name": "ci-bot", "scope": "write"}, 201, &tok)
	code, body = e.do("POST", "/api/v1/repos/app/builds", tok.Token, nil)
	if code != 201 || json.Unmarshal(body, &b) != nil || b.User != "ci-bot" || b.Number != 3 {
		t.Fatalf("trigger with a write token: %d %s", code, body)
	}
	e.json("POST", "/api/v1/repos/app/builds/3/cancel", nil, 200, nil)
	resWaitBuild(t, e, "app", 3, "finished", func(b contracts.Build) bool { return b.Status.Terminal() })
}

// resCheckArtifact downloads an artifact and checks it is a gzip tarball
// holding name with content.
func resCheckArtifact(t *testing.T, e *env, path, name, content string) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" {
		t.Fatalf("artifact: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("artifact: %v", err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("artifact tar: %v", err)
		}
		names = append(names, h.Name)
		if strings.TrimPrefix(h.Name, "./") == name {
			got, _ := io.ReadAll(tr)
			if string(got) != content {
				t.Fatalf("artifact %s: %q, want %q", name, got, content)
			}
			return
		}
	}
	t.Fatalf("artifact: no %s among %v", name, names)
}
