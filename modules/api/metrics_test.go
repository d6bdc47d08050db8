package api_test

import (
	"github.com/zeroci/zeroci/internal/gittest"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMetrics: /metrics serves the Prometheus text format with the build,
// job, queue, runner, transport and log figures once a build ran.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	src := gittest.Repo(t, map[string]string{".zeroci/pipeline.yaml": "jobs:\n  hello: {script: [\"echo hi\"]}\n"})
	e.json("POST", "/api/v1/repos", map[string]any{"name": "app", "url": src}, 201, nil)
	e.json("POST", "/api/v1/repos/app/builds", map[string]any{}, 201, nil)
	if code, _ := e.do("GET", "/api/v1/repos", "zci_wrong", nil); code != 401 {
		t.Fatalf("a wrong token: %d", code)
	}
	want := []string{ // whole lines (the value included), but for requests_total
		"zeroci_builds_triggered_total 1\n",
		"zeroci_builds_finished_total{status=\"success\"} 1\n",
		"zeroci_job_duration_seconds_count{status=\"success\"} 1\n",
		"zeroci_queue_depth 0\n",
		"zeroci_runners_connected 1\n",
		"zeroci_api_auth_failures_total 1\n",
		"zeroci_transport_requests_total ",
		"zeroci_transport_auth_failures_total 0\n",
		"zeroci_log_bytes_total 3\n", // "hi\n"
	}
	deadline := time.Now().Add(30 * time.Second)
	var body string
	for {
		resp, err := http.Get(e.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(data)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, "\n"+w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q:\n%s", missing, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricNames: every metric is named zeroci_... (SPEC §5).
func TestMetricNames(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		if !strings.HasPrefix(line, "zeroci_") {
			t.Errorf("metric not prefixed zeroci_: %s", line)
		}
	}
	if n < 20 {
		t.Fatalf("only %d samples:\n%s", n, data)
	}
}
