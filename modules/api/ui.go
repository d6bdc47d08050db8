package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// webFS holds the web UI: plain HTML, CSS and JavaScript modules, served
// as they are (no build step, no Node at run time).
//
//go:embed web
var webFS embed.FS

// assetTypes are the content types of the UI's files by extension. They are
// fixed here rather than taken from the system's MIME tables, so that every
// host serves the same types (browsers refuse JavaScript modules served
// with a wrong type).
var assetTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
}

// uiCSP is the UI's content security policy: its own scripts, styles and
// API only, so text from logs or repositories cannot run as code even if
// a bug rendered it as markup.
const uiCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// uiRoutes serves the web UI: the page at "/" and its files under
// "/assets/". Both are public: the page logs in with a token it keeps in
// the browser and sends with every API call.
func (a *API) uiRoutes() {
	assets := loadAssets()
	a.handlePublic("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		assets.serve(w, r, "index.html")
	})
	a.handlePublic("GET /assets/{file...}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if name == "index.html" {
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
			return
		}
		assets.serve(w, r, name)
	})
}

// asset is one embedded file with its validator.
type asset struct {
	data  []byte
	ctype string
	etag  string
}

// assetSet is the UI's files by path under web/.
type assetSet map[string]asset

// loadAssets indexes the embedded files. It only reads the binary's own
// data, so the constructor stays free of side effects.
func loadAssets() assetSet {
	set := assetSet{}
	fs.WalkDir(webFS, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		ctype, ok := assetTypes[path.Ext(p)]
		if !ok {
			return nil // not a kind of file the UI serves
		}
		data, err := webFS.ReadFile(p)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(data)
		set[strings.TrimPrefix(p, "web/")] = asset{data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	return set
}

// serve answers with the file name (a path under web/), or 404. Files are
// revalidated on every load (ETag), so a new binary's UI shows at once.
func (s assetSet) serve(w http.ResponseWriter, r *http.Request, name string) {
	f, ok := s[name]
	if !ok || !fs.ValidPath(name) {
		writeError(w, http.StatusNotFound, "not_found", "no such file: /assets/"+name)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if strings.HasPrefix(f.ctype, "text/html") {
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.data))
}
