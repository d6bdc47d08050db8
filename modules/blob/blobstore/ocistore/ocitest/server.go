// Package ocitest is an OCI Object Storage server for tests: the routes
// ocistore uses, with content kept in files under a temporary directory,
// every request's signature verified against the keys the test trusts,
// and faults to inject.
//
//	creds := ocitest.NewCredentials(t)
//	srv := ocitest.NewServer(t, "ns", "bucket")
//	srv.Trust(creds)
//	// ocistore.Config{Endpoint: srv.URL(), Auth: "config_file",
//	//	ConfigFile: creds.ConfigFile, Profile: creds.Profile, ...}
//
// Routes (as the real service, namespace and bucket fixed at NewServer):
//
//	HEAD|GET /n/{ns}/b/{bucket}                     bucket
//	PUT|GET|HEAD|DELETE /n/{ns}/b/{bucket}/o/{obj}  object (GET with Range)
//	GET /n/{ns}/b/{bucket}/o                        list: prefix, start, startAfter, end, limit, fields
//	POST /n/{ns}/b/{bucket}/u                       create a multipart upload
//	PUT|POST|DELETE /n/{ns}/b/{bucket}/u/{obj}      upload a part, commit, abort (uploadId, uploadPartNum)
//
// Every request must carry an OCI request signature (draft-cavage
// http-signatures, version 1, rsa-sha256) over (request-target), host and
// date (or x-date), and for POST also content-length, content-type and
// x-content-sha256, which must match the body; object and part uploads
// (PUT) may leave the body out, as with the real service. A date more than
// MaxClockSkew off, an unknown key, a missing signed header or a signature
// that does not verify is answered 401 NotAuthenticated.
package ocitest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Route names a group of the server's routes, for faults and the request
// log.
type Route string

// The routes.
const (
	RouteBucket  Route = "bucket"  // /n/{ns}/b/{bucket}
	RouteObject  Route = "object"  // /n/{ns}/b/{bucket}/o/{object}
	RouteList    Route = "list"    // /n/{ns}/b/{bucket}/o
	RouteUploads Route = "uploads" // /n/{ns}/b/{bucket}/u
	RouteUpload  Route = "upload"  // /n/{ns}/b/{bucket}/u/{object}
)

const (
	maxJSONBody = 1 << 20
	maxParts    = 10000
	maxListSize = 1000
)

// Request is one request the server answered.
type Request struct {
	Method string
	Route  Route // "" if the path matched no route
	Object string
	// Query is the raw query string.
	Query  string
	Status int
}

// Server is the fake Object Storage service. Safe for concurrent use.
type Server struct {
	srv    *httptest.Server
	dir    string
	ns     string
	bucket string
	done   chan struct{}

	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	objects map[string]*object
	uploads map[string]*upload
	faults  []*Fault
	log     []Request
	seq     uint64
}

type object struct {
	file         string
	size         int64
	md5          string // Content-MD5 (base64) of a single-part object
	multipartMD5 string // opc-multipart-md5 of a committed multipart upload
	contentType  string
	meta         map[string]string // opc-meta-* without the prefix, lowercase
	modified     time.Time
	etag         string
}

type upload struct {
	id          string
	object      string
	contentType string
	meta        map[string]string
	created     time.Time
	parts       map[int]*part
}

type part struct {
	file string
	size int64
	md5  []byte
	etag string
}

// NewServer starts a server for one namespace and bucket, stopped and
// emptied at the test's end.
func NewServer(t testing.TB, namespace, bucket string) *Server {
	t.Helper()
	s := &Server{
		dir:     t.TempDir(),
		ns:      namespace,
		bucket:  bucket,
		done:    make(chan struct{}),
		keys:    map[string]*rsa.PublicKey{},
		objects: map[string]*object{},
		uploads: map[string]*upload{},
	}
	s.srv = httptest.NewServer(s)
	t.Cleanup(func() {
		close(s.done) // releases hanging requests
		s.srv.Close()
	})
	return s
}

// URL is the server's endpoint, http://127.0.0.1:PORT.
func (s *Server) URL() string { return s.srv.URL }

// Trust makes the server accept signatures of c's key.
func (s *Server) Trust(c Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[c.KeyID()] = c.PublicKey
}

// Requests returns the requests answered so far, in order of completion.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// PendingUploads lists the multipart uploads neither committed nor
// aborted, as "object uploadId".
func (s *Server) PendingUploads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, u := range s.uploads {
		out = append(out, u.object+" "+u.id)
	}
	sort.Strings(out)
	return out
}

// Objects lists the stored object names in order.
func (s *Server) Objects() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.objects {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Put stores an object directly, as another client of the bucket would;
// meta are opc-meta-* names without the prefix.
func (s *Server) Put(name string, content []byte, contentType string, meta map[string]string) error {
	f, err := s.newFile("object")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		return err
	}
	sum := md5.Sum(content)
	m := map[string]string{}
	for k, v := range meta {
		m[strings.ToLower(k)] = v
	}
	s.install(name, &object{
		file: f.Name(), size: int64(len(content)), md5: base64.StdEncoding.EncodeToString(sum[:]),
		contentType: contentType, meta: m, modified: now(), etag: s.newID(),
	})
	return nil
}

// Corrupt flips the first byte of an object's stored content, keeping its
// size and metadata.
func (s *Server) Corrupt(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[name]
	if o == nil {
		return fmt.Errorf("ocitest: corrupt %q: no such object", name)
	}
	if o.size == 0 {
		return fmt.Errorf("ocitest: corrupt %q: empty", name)
	}
	f, err := os.OpenFile(o.file, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b[:], 0)
	return err
}

// statusWriter remembers the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	route, ns, bucket, name := parsePath(r.URL.Path)
	defer func() {
		s.mu.Lock()
		s.log = append(s.log, Request{Method: r.Method, Route: route, Object: name, Query: r.URL.RawQuery, Status: w.status})
		s.mu.Unlock()
	}()
	w.Header().Set("opc-request-id", s.newID())

	// JSON bodies are read first, to check x-content-sha256.
	var body []byte
	if r.Method == http.MethodPost {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidParameter", "reading the body: "+err.Error())
			return
		}
		if len(body) > maxJSONBody {
			writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "body too large")
			return
		}
	}
	bodyHeaders := r.Method == http.MethodPost || r.Method == http.MethodPatch ||
		(r.Method == http.MethodPut && route != RouteObject && route != RouteUpload)
	if err := s.verify(r, bodyHeaders, body); err != nil {
		drain(r)
		writeError(w, http.StatusUnauthorized, "NotAuthenticated", err.Error())
		return
	}
	if s.fault(w, r, route) {
		return
	}
	if route == "" {
		drain(r)
		writeError(w, http.StatusNotFound, "NotFound", "no such route: "+r.URL.Path)
		return
	}
	if ns != s.ns || bucket != s.bucket {
		drain(r)
		writeError(w, http.StatusNotFound, "BucketNotFound", fmt.Sprintf("either the bucket %q in namespace %q does not exist or you are not authorized to access it", bucket, ns))
		return
	}
	switch {
	case route == RouteBucket && (r.Method == http.MethodHead || r.Method == http.MethodGet):
		w.Header().Set("ETag", "bucket-etag")
		w.WriteHeader(http.StatusOK)
	case route == RouteObject && r.Method == http.MethodPut:
		s.putObject(w, r, name)
	case route == RouteObject && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.getObject(w, r, name)
	case route == RouteObject && r.Method == http.MethodDelete:
		s.deleteObject(w, name)
	case route == RouteList && r.Method == http.MethodGet:
		s.list(w, r)
	case route == RouteUploads && r.Method == http.MethodPost:
		s.createUpload(w, body)
	case route == RouteUpload && r.Method == http.MethodPut:
		s.uploadPart(w, r, name)
	case route == RouteUpload && r.Method == http.MethodPost:
		s.commit(w, r, name, body)
	case route == RouteUpload && r.Method == http.MethodDelete:
		s.abort(w, r, name)
	default:
		drain(r)
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" "+string(route))
	}
}

// parsePath splits /n/{ns}/b/{bucket}[/o[/{object}]|/u[/{object}]].
func parsePath(p string) (route Route, ns, bucket, object string) {
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 6)
	if len(parts) < 4 || parts[0] != "n" || parts[2] != "b" || parts[1] == "" || parts[3] == "" {
		return "", "", "", ""
	}
	ns, bucket = parts[1], parts[3]
	switch {
	case len(parts) == 4:
		return RouteBucket, ns, bucket, ""
	case len(parts) == 5 && parts[4] == "o":
		return RouteList, ns, bucket, ""
	case len(parts) == 5 && parts[4] == "u":
		return RouteUploads, ns, bucket, ""
	case len(parts) == 6 && parts[4] == "o" && parts[5] != "":
		return RouteObject, ns, bucket, parts[5]
	case len(parts) == 6 && parts[4] == "u" && parts[5] != "":
		return RouteUpload, ns, bucket, parts[5]
	}
	return "", "", "", ""
}

func (s *Server) newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) newFile(prefix string) (*os.File, error) {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	return os.Create(filepath.Join(s.dir, fmt.Sprintf("%s-%d", prefix, n)))
}

// now is the server's clock in the service's precision (whole seconds).
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// drain reads what is left of a request body (so the connection stays
// usable) before an error answer.
func drain(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }

// receive stores a request body in a new file, checking its length,
// Content-MD5 and x-content-sha256. On error it has answered the request
// and removed the file.
func (s *Server) receive(w http.ResponseWriter, r *http.Request, prefix string) (file string, size int64, sum []byte, ok bool) {
	if r.ContentLength < 0 {
		drain(r)
		writeError(w, http.StatusLengthRequired, "LengthRequired", "Content-Length is required")
		return "", 0, nil, false
	}
	f, err := s.newFile(prefix)
	if err != nil {
		drain(r)
		writeError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return "", 0, nil, false
	}
	defer f.Close()
	fail := func(status int, code, msg string) (string, int64, []byte, bool) {
		os.Remove(f.Name())
		writeError(w, status, code, msg)
		return "", 0, nil, false
	}
	m, h := md5.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(f, m, h), r.Body)
	if err != nil {
		return fail(http.StatusBadRequest, "InvalidParameter", "reading the body: "+err.Error())
	}
	if n != r.ContentLength {
		return fail(http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("body has %d bytes, Content-Length %d", n, r.ContentLength))
	}
	sum = m.Sum(nil)
	if want := r.Header.Get("Content-MD5"); want != "" && want != base64.StdEncoding.EncodeToString(sum) {
		return fail(http.StatusBadRequest, "InvalidDigest", "the computed MD5 does not match the Content-MD5 header")
	}
	if want := r.Header.Get("X-Content-Sha256"); want != "" && want != b64(h) {
		return fail(http.StatusUnauthorized, "NotAuthenticated", "x-content-sha256 does not match the body")
	}
	return f.Name(), n, sum, true
}

func b64(h hash.Hash) string { return base64.StdEncoding.EncodeToString(h.Sum(nil)) }

// install makes o the object called name, replacing (and removing the file
// of) any older one.
func (s *Server) install(name string, o *object) {
	s.mu.Lock()
	old := s.objects[name]
	s.objects[name] = o
	s.mu.Unlock()
	if old != nil {
		os.Remove(old.file) // readers that opened it keep reading
	}
}

func metadata(h http.Header) map[string]string {
	meta := map[string]string{}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "opc-meta-"); ok && len(vs) > 0 {
			meta[name] = vs[0]
		}
	}
	return meta
}

func (s *Server) putObject(w http.ResponseWriter, r *http.Request, name string) {
	file, size, sum, ok := s.receive(w, r, "object")
	if !ok {
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	o := &object{
		file: file, size: size, md5: base64.StdEncoding.EncodeToString(sum), contentType: ct,
		meta: metadata(r.Header), modified: now(), etag: s.newID(),
	}
	s.install(name, o)
	w.Header().Set("ETag", o.etag)
	w.Header().Set("opc-content-md5", o.md5)
	w.Header().Set("Last-Modified", o.modified.Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, name string) {
	s.mu.Lock()
	o := s.objects[name]
	var f *os.File
	var err error
	if o != nil && r.Method == http.MethodGet {
		f, err = os.Open(o.file) // under the lock: install may remove it next
	}
	s.mu.Unlock()
	if o == nil {
		writeError(w, http.StatusNotFound, "ObjectNotFound", fmt.Sprintf("the object %q was not found in the bucket %q", name, s.bucket))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return
	}
	if f != nil {
		defer f.Close()
	}
	h := w.Header()
	h.Set("ETag", o.etag)
	h.Set("Last-Modified", o.modified.Format(http.TimeFormat))
	h.Set("Content-Type", o.contentType)
	h.Set("Accept-Ranges", "bytes")
	for k, v := range o.meta {
		h.Set("opc-meta-"+k, v)
	}
	if o.multipartMD5 != "" {
		h.Set("opc-multipart-md5", o.multipartMD5)
	}
	start, end, status := int64(0), o.size, http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && r.Method == http.MethodGet {
		var ok bool
		start, end, ok = parseRange(rg, o.size)
		if !ok {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", o.size))
			h.Del("Content-Type")
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", fmt.Sprintf("range %q not satisfiable for %d bytes", rg, o.size))
			return
		}
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, o.size))
	} else if o.md5 != "" {
		h.Set("Content-MD5", o.md5)
	}
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		_, _ = io.Copy(w, io.NewSectionReader(f, start, end-start))
	}
}

// parseRange parses "bytes=a-b", "bytes=a-" or "bytes=-n" into [start,
// end); ok is false if it is malformed or not satisfiable.
func parseRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false
	}
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return 0, 0, false
		}
		return max(0, size-n), size, true
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 || start >= size {
		return 0, 0, false
	}
	end = size
	if b != "" {
		last, err := strconv.ParseInt(b, 10, 64)
		if err != nil || last < start {
			return 0, 0, false
		}
		end = min(last+1, size)
	}
	return start, end, true
}

func (s *Server) deleteObject(w http.ResponseWriter, name string) {
	s.mu.Lock()
	o := s.objects[name]
	delete(s.objects, name)
	s.mu.Unlock()
	if o == nil {
		writeError(w, http.StatusNotFound, "ObjectNotFound", fmt.Sprintf("the object %q was not found in the bucket %q", name, s.bucket))
		return
	}
	os.Remove(o.file)
	w.WriteHeader(http.StatusNoContent)
}

type summary struct {
	Name         string `json:"name"`
	Size         *int64 `json:"size,omitempty"`
	MD5          string `json:"md5,omitempty"`
	ETag         string `json:"etag,omitempty"`
	TimeCreated  string `json:"timeCreated,omitempty"`
	TimeModified string `json:"timeModified,omitempty"`
}

const jsonTime = "2006-01-02T15:04:05.000Z07:00"

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := maxListSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListSize {
			writeError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("limit %q: want 1..%d", v, maxListSize))
			return
		}
		limit = n
	}
	fields := map[string]bool{"name": true}
	if v := q.Get("fields"); v != "" {
		for _, f := range strings.Split(v, ",") {
			f = strings.ToLower(strings.TrimSpace(f))
			switch f {
			case "name", "size", "md5", "etag", "timecreated", "timemodified", "storagetier", "archivalstate":
				fields[f] = true
			default:
				writeError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("unknown field %q", f))
				return
			}
		}
	}
	if q.Get("delimiter") != "" {
		writeError(w, http.StatusBadRequest, "InvalidParameter", "delimiter is not supported by ocitest")
		return
	}
	prefix, startAt, after, end := q.Get("prefix"), q.Get("start"), q.Get("startAfter"), q.Get("end")

	s.mu.Lock()
	names := make([]string, 0, len(s.objects))
	for name := range s.objects {
		if strings.HasPrefix(name, prefix) && name >= startAt && (after == "" || name > after) && (end == "" || name < end) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out struct {
		Objects       []summary `json:"objects"`
		Prefixes      []string  `json:"prefixes,omitempty"`
		NextStartWith string    `json:"nextStartWith,omitempty"`
	}
	out.Objects = []summary{}
	for i, name := range names {
		if i == limit {
			out.NextStartWith = name
			break
		}
		o := s.objects[name]
		sm := summary{Name: name}
		if fields["size"] {
			size := o.size
			sm.Size = &size
		}
		if fields["md5"] {
			sm.MD5 = o.md5
			if sm.MD5 == "" {
				sm.MD5 = o.multipartMD5
			}
		}
		if fields["etag"] {
			sm.ETag = o.etag
		}
		if fields["timecreated"] {
			sm.TimeCreated = o.modified.Format(jsonTime)
		}
		if fields["timemodified"] {
			sm.TimeModified = o.modified.Format(jsonTime)
		}
		out.Objects = append(out.Objects, sm)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Server) createUpload(w http.ResponseWriter, body []byte) {
	var req struct {
		Object      string            `json:"object"`
		ContentType string            `json:"contentType"`
		Metadata    map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidParameter", "body: "+err.Error())
		return
	}
	if req.Object == "" {
		writeError(w, http.StatusBadRequest, "InvalidParameter", "object is required")
		return
	}
	meta := map[string]string{}
	for k, v := range req.Metadata {
		name, ok := strings.CutPrefix(strings.ToLower(k), "opc-meta-")
		if !ok || name == "" {
			writeError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("metadata key %q is not opc-meta-*", k))
			return
		}
		meta[name] = v
	}
	if req.ContentType == "" {
		req.ContentType = "application/octet-stream"
	}
	u := &upload{id: s.newID(), object: req.Object, contentType: req.ContentType, meta: meta, created: now(), parts: map[int]*part{}}
	s.mu.Lock()
	s.uploads[u.id] = u
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", fmt.Sprintf("/n/%s/b/%s/u/%s?uploadId=%s", s.ns, s.bucket, req.Object, u.id))
	_ = json.NewEncoder(w).Encode(map[string]string{
		"namespace": s.ns, "bucket": s.bucket, "object": u.object, "uploadId": u.id,
		"timeCreated": u.created.Format(jsonTime), "storageTier": "Standard",
	})
}

// findUpload looks up the upload a request names; on error it has
// answered the request.
func (s *Server) findUpload(w http.ResponseWriter, r *http.Request, name string) *upload {
	id := r.URL.Query().Get("uploadId")
	s.mu.Lock()
	u := s.uploads[id]
	s.mu.Unlock()
	if u == nil || u.object != name {
		drain(r)
		writeError(w, http.StatusNotFound, "NoSuchUpload", fmt.Sprintf("no upload %q for object %q", id, name))
		return nil
	}
	return u
}

func (s *Server) uploadPart(w http.ResponseWriter, r *http.Request, name string) {
	num, err := strconv.Atoi(r.URL.Query().Get("uploadPartNum"))
	if err != nil || num < 1 || num > maxParts {
		drain(r)
		writeError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("uploadPartNum %q: want 1..%d", r.URL.Query().Get("uploadPartNum"), maxParts))
		return
	}
	if s.findUpload(w, r, name) == nil {
		return
	}
	file, size, sum, ok := s.receive(w, r, "part")
	if !ok {
		return
	}
	p := &part{file: file, size: size, md5: sum, etag: s.newID()}
	s.mu.Lock()
	u := s.uploads[r.URL.Query().Get("uploadId")]
	var old *part
	if u != nil {
		old = u.parts[num]
		u.parts[num] = p
	}
	s.mu.Unlock()
	if u == nil { // aborted or committed meanwhile
		os.Remove(file)
		writeError(w, http.StatusNotFound, "NoSuchUpload", "the upload ended while the part was sent")
		return
	}
	if old != nil {
		os.Remove(old.file)
	}
	w.Header().Set("ETag", p.etag)
	w.Header().Set("opc-content-md5", base64.StdEncoding.EncodeToString(sum))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request, name string, body []byte) {
	var req struct {
		PartsToCommit []struct {
			PartNum int    `json:"partNum"`
			ETag    string `json:"etag"`
		} `json:"partsToCommit"`
		PartsToExclude []int `json:"partsToExclude"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidParameter", "body: "+err.Error())
		return
	}
	if len(req.PartsToCommit) == 0 {
		writeError(w, http.StatusBadRequest, "InvalidParameter", "partsToCommit is empty")
		return
	}
	id := r.URL.Query().Get("uploadId")
	s.mu.Lock()
	u := s.uploads[id]
	if u == nil || u.object != name {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "NoSuchUpload", fmt.Sprintf("no upload %q for object %q", id, name))
		return
	}
	var parts []*part
	nums := map[int]bool{}
	for _, pc := range req.PartsToCommit {
		p := u.parts[pc.PartNum]
		if p == nil || p.etag != pc.ETag || nums[pc.PartNum] {
			s.mu.Unlock()
			writeError(w, http.StatusBadRequest, "InvalidUploadPart", fmt.Sprintf("part %d with etag %q was not uploaded (or is listed twice)", pc.PartNum, pc.ETag))
			return
		}
		nums[pc.PartNum] = true
	}
	for _, num := range slices.Sorted(maps.Keys(nums)) {
		parts = append(parts, u.parts[num])
	}
	delete(s.uploads, id) // the commit owns it now
	s.mu.Unlock()

	defer func() {
		for _, p := range u.parts {
			os.Remove(p.file)
		}
	}()
	f, err := s.newFile("object")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return
	}
	defer f.Close()
	var size int64
	md5s := md5.New()
	for _, p := range parts {
		pf, err := os.Open(p.file)
		if err != nil {
			os.Remove(f.Name())
			writeError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
			return
		}
		n, err := io.Copy(f, pf)
		pf.Close()
		if err != nil {
			os.Remove(f.Name())
			writeError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
			return
		}
		size += n
		md5s.Write(p.md5)
	}
	o := &object{
		file: f.Name(), size: size, contentType: u.contentType, meta: u.meta, modified: now(), etag: s.newID(),
		multipartMD5: fmt.Sprintf("%s-%d", b64(md5s), len(parts)),
	}
	s.install(name, o)
	w.Header().Set("ETag", o.etag)
	w.Header().Set("opc-multipart-md5", o.multipartMD5)
	w.Header().Set("Last-Modified", o.modified.Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) abort(w http.ResponseWriter, r *http.Request, name string) {
	id := r.URL.Query().Get("uploadId")
	s.mu.Lock()
	u := s.uploads[id]
	if u != nil && u.object == name {
		delete(s.uploads, id)
	}
	s.mu.Unlock()
	if u == nil || u.object != name {
		writeError(w, http.StatusNotFound, "NoSuchUpload", fmt.Sprintf("no upload %q for object %q", id, name))
		return
	}
	for _, p := range u.parts {
		os.Remove(p.file)
	}
	w.WriteHeader(http.StatusNoContent)
}
