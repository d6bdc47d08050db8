package api

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3.1 document of every /api/ route, written by
// hand; openapi_test.go checks it against Patterns both ways.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI 3.1 document served at /api/v1/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

// serveOpenAPI serves the document. It is public (no token): it describes
// the API, it holds no data.
func (a *API) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	w.Write(openAPIDoc)
}
