package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zeroci/zeroci/modules/api"
)

// oaDoc is the part of an OpenAPI 3.1 document the tests check.
type oaDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Parameters map[string]oaParam `json:"parameters"`
	} `json:"components"`
}

type oaParam struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

type oaOp struct {
	OperationID string                     `json:"operationId"`
	Parameters  []oaParam                  `json:"parameters"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

var oaMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

// oaWildcard matches a path wildcard: {name}, {name...} or {$}.
var oaWildcard = regexp.MustCompile(`\{[^}]*\}`)

// oaNormal makes "METHOD /path/{x}" comparable whatever the wildcards
// are named.
func oaNormal(method, path string) string {
	path = strings.TrimSuffix(path, "{$}")
	return strings.ToUpper(method) + " " + oaWildcard.ReplaceAllString(path, "{}")
}

func oaParse(t *testing.T, data []byte) oaDoc {
	t.Helper()
	var doc oaDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q, want 3.1.x", doc.OpenAPI)
	}
	return doc
}

// oaOperations returns the document's operations by normalised route.
func oaOperations(t *testing.T, doc oaDoc) map[string]string {
	t.Helper()
	ops := map[string]string{}
	for path, item := range doc.Paths {
		for key := range item {
			if key != "parameters" && key != "summary" && key != "description" && !slices.Contains(oaMethods, key) {
				t.Errorf("path %s: unexpected key %q", path, key)
			}
			if slices.Contains(oaMethods, key) {
				ops[oaNormal(key, path)] = strings.ToUpper(key) + " " + path
			}
		}
	}
	return ops
}

// TestOpenAPIMatchesRoutes: every /api/ route registered by any group
// is in the document, and every operation in the document is registered.
// (The UI's routes outside /api/ serve HTML, not the API, and are not
// described.)
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := oaParse(t, api.OpenAPI())
	ops := oaOperations(t, doc)
	registered := map[string]bool{}
	for _, p := range api.New(api.Options{}).Patterns() {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("pattern %q has no method: the document cannot describe it", p)
			continue
		}
		if !strings.HasPrefix(path, "/api/") {
			continue
		}
		key := oaNormal(method, path)
		registered[key] = true
		if _, ok := ops[key]; !ok {
			t.Errorf("route %q is not in openapi.json", p)
		}
	}
	for key, op := range ops {
		if !registered[key] {
			t.Errorf("openapi.json describes %s, which no handler serves", op)
		}
	}
	for _, must := range []string{"GET /api/v1/repos/{}/builds/{}/jobs/{}/log", "GET /api/v1/events", "POST /api/v1/hooks/{}"} {
		if _, ok := ops[must]; !ok {
			t.Errorf("openapi.json lacks %s", must)
		}
	}
}

// TestOpenAPIWellFormed: every operation has an id and responses, and
// declares each of its path's parameters.
func TestOpenAPIWellFormed(t *testing.T) {
	doc := oaParse(t, api.OpenAPI())
	ids := map[string]bool{}
	resolve := func(p oaParam) oaParam {
		if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
			r, found := doc.Components.Parameters[name]
			if !found {
				t.Errorf("unresolved %s", p.Ref)
			}
			return r
		}
		return p
	}
	for path, item := range doc.Paths {
		var shared []oaParam
		if raw, ok := item["parameters"]; ok {
			if err := json.Unmarshal(raw, &shared); err != nil {
				t.Fatalf("%s parameters: %v", path, err)
			}
		}
		for _, method := range oaMethods {
			raw, ok := item[method]
			if !ok {
				continue
			}
			var op oaOp
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s %s: missing or duplicate operationId %q", method, path, op.OperationID)
			}
			ids[op.OperationID] = true
			if len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses", method, path)
			}
			declared := map[string]bool{}
			for _, p := range append(slices.Clone(shared), op.Parameters...) {
				if p = resolve(p); p.In == "path" {
					declared[p.Name] = true
				}
			}
			for _, w := range oaWildcard.FindAllString(path, -1) {
				if name := strings.Trim(w, "{}"); !declared[name] {
					t.Errorf("%s %s: path parameter %s not declared", method, path, name)
				}
			}
		}
	}
	// Every $ref points into the document.
	var all any
	if err := json.Unmarshal(api.OpenAPI(), &all); err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`"\$ref":\s*"#/([^"]+)"`).FindAllSubmatch(api.OpenAPI(), -1)
	for _, m := range refs {
		var node any = all
		for _, part := range strings.Split(string(m[1]), "/") {
			obj, _ := node.(map[string]any)
			node = obj[part]
		}
		if node == nil {
			t.Errorf("$ref #/%s resolves to nothing", m[1])
		}
	}
}

// TestOpenAPIServed: the document is served without a token, as JSON,
// and is the embedded one.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(data, api.OpenAPI()) {
		t.Fatal("served document differs from api.OpenAPI()")
	}
	oaParse(t, data)
}
