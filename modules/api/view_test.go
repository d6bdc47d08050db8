package api_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/zeroci/zeroci/internal/gittest"
)

// TestBuildJSONKeys: a build and its jobs show every field of SPEC §5,
// null when unset, so clients need not tell an absent key from an empty one.
func TestBuildJSONKeys(t *testing.T) {
	e := newEnv(t)
	src := gittest.PipelineRepo(t, "jobs:\n  a: {script: [\"true\"]}\n  gate: {depends_on: [a], manual: true, script: [\"true\"]}\n")
	e.json("POST", "/api/v1/repos", map[string]any{"name": "app", "url": src}, 201, nil)
	var created map[string]any
	e.json("POST", "/api/v1/repos/app/builds", map[string]any{}, 201, &created)
	for _, k := range []string{"number", "repo", "status", "ref", "commit", "params", "event", "user", "retry_of", "error", "created_at", "started_at", "finished_at", "jobs"} {
		if _, ok := created[k]; !ok {
			t.Errorf("a new build lacks %q: %v", k, created)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	var b struct {
		Jobs []map[string]json.RawMessage `json:"jobs"`
	}
	for {
		e.json("GET", "/api/v1/repos/app/builds/1", nil, 200, &b)
		if len(b.Jobs) == 2 && string(b.Jobs[1]["status"]) == `"blocked"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gate never blocked: %v", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	gate := b.Jobs[1]
	for _, k := range []string{"id", "status", "depends_on", "started_at", "finished_at", "exit_code", "reason"} {
		if _, ok := gate[k]; !ok {
			t.Errorf("a job lacks %q: %v", k, gate)
		}
	}
	if string(gate["started_at"]) != "null" || string(gate["exit_code"]) != "null" || string(gate["depends_on"]) != `["a"]` {
		t.Errorf("blocked job: %v", gate)
	}
	var list []map[string]any
	e.json("GET", "/api/v1/repos/app/builds", nil, 200, &list)
	if _, ok := list[0]["jobs"]; ok || len(list) != 1 {
		t.Errorf("a list shows jobs: %v", list)
	}
}
