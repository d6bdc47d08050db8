package ocitest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// signed builds a request to the server signed with the SDK's signer for
// c, then lets tamper change it.
type signed struct {
	method, path, body string
	bodySigned         bool // sign the body headers (as for JSON bodies)
	tamper             func(r *http.Request)
}

func send(t *testing.T, srv *Server, client *http.Client, c Credentials, s signed) int {
	t.Helper()
	provider, err := common.ConfigurationProviderFromFileWithProfile(c.ConfigFile, c.Profile, "")
	if err != nil {
		t.Fatal(err)
	}
	signer := common.RequestSignerExcludeBody(provider)
	if s.bodySigned {
		signer = common.DefaultRequestSigner(provider)
	}
	req, err := http.NewRequest(s.method, srv.URL()+s.path, strings.NewReader(s.body))
	if err != nil {
		t.Fatal(err)
	}
	if s.body == "" {
		req.Body = http.NoBody
	}
	req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	req.Header.Set("Content-Type", "application/json")
	if err := signer.Sign(req); err != nil {
		t.Fatal(err)
	}
	if s.tamper != nil {
		s.tamper(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestSignatures: correctly signed requests pass; any change after
// signing, a missing signed header, a stale date, an unknown or wrong key
// gets 401.
func TestSignatures(t *testing.T) {
	creds := NewCredentials(t)
	other := NewCredentials(t)
	srv := NewServer(t, "ns", "b")
	srv.Trust(creds)
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()

	const create = `{"object":"o","metadata":{"opc-meta-sha256":"x"}}`
	cases := []struct {
		name  string
		creds Credentials
		req   signed
		want  int
	}{
		{"head bucket", creds, signed{method: "HEAD", path: "/n/ns/b/b"}, 200},
		{"put object, body not signed", creds, signed{method: "PUT", path: "/n/ns/b/b/o/a%2Fb", body: "data"}, 200},
		{"create upload, body signed", creds, signed{method: "POST", path: "/n/ns/b/b/u", body: create, bodySigned: true}, 200},
		{"create upload, body headers not signed", creds, signed{method: "POST", path: "/n/ns/b/b/u", body: create}, 401},
		{"body changed after signing", creds, signed{method: "POST", path: "/n/ns/b/b/u", body: create, bodySigned: true,
			tamper: func(r *http.Request) {
				r.Body = io.NopCloser(strings.NewReader(strings.Replace(create, `"o"`, `"p"`, 1)))
			}}, 401},
		{"path changed after signing", creds, signed{method: "HEAD", path: "/n/ns/b/b/o/a",
			tamper: func(r *http.Request) { r.URL.Path = "/n/ns/b/b/o/z" }}, 401},
		{"query changed after signing", creds, signed{method: "GET", path: "/n/ns/b/b/o?prefix=a",
			tamper: func(r *http.Request) { r.URL.RawQuery = "prefix=b" }}, 401},
		{"method changed after signing", creds, signed{method: "GET", path: "/n/ns/b/b/o/a",
			tamper: func(r *http.Request) { r.Method = "DELETE" }}, 401},
		{"date changed after signing", creds, signed{method: "HEAD", path: "/n/ns/b/b",
			tamper: func(r *http.Request) {
				r.Header.Set("Date", time.Now().Add(time.Second).UTC().Format(http.TimeFormat))
			}}, 401},
		{"stale date", creds, signed{method: "HEAD", path: "/n/ns/b/b",
			tamper: func(r *http.Request) { resign(t, r, creds, time.Now().Add(-10*time.Minute)) }}, 401},
		{"no authorization", creds, signed{method: "HEAD", path: "/n/ns/b/b",
			tamper: func(r *http.Request) { r.Header.Del("Authorization") }}, 401},
		{"signature of another request", creds, signed{method: "HEAD", path: "/n/ns/b/b",
			tamper: func(r *http.Request) {
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), `signature="`, `signature="AAAA`, 1))
			}}, 401},
		{"unknown key id", other, signed{method: "HEAD", path: "/n/ns/b/b"}, 401},
		{"right key id, wrong key", creds.WithConfig(t, creds.Region, other.KeyFile), signed{method: "HEAD", path: "/n/ns/b/b"}, 401},
		{"x-content-sha256 of another body", creds, signed{method: "PUT", path: "/n/ns/b/b/o/c", body: "data",
			tamper: func(r *http.Request) { r.Header.Set("X-Content-Sha256", "bm90IHRoZSBoYXNo") }}, 401},
	}
	for _, c := range cases {
		if got := send(t, srv, client, c.creds, c.req); got != c.want {
			t.Errorf("%s: status %d; want %d", c.name, got, c.want)
		}
	}
	if got := srv.Objects(); fmt.Sprint(got) != "[a/b]" {
		t.Fatalf("objects %q; want only the one accepted put", got)
	}
	if got := srv.PendingUploads(); len(got) != 1 {
		t.Fatalf("uploads %q; want only the one accepted create", got)
	}
}

// resign signs r again as of date.
func resign(t *testing.T, r *http.Request, c Credentials, date time.Time) {
	provider, err := common.ConfigurationProviderFromFileWithProfile(c.ConfigFile, c.Profile, "")
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Date", date.UTC().Format(http.TimeFormat))
	if err := common.RequestSignerExcludeBody(provider).Sign(r); err != nil {
		t.Fatal(err)
	}
}

// TestRanges: the Range forms the server understands.
func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		h          string
		size       int64
		start, end int64
		ok         bool
	}{
		{"bytes=0-9", 100, 0, 10, true},
		{"bytes=90-", 100, 90, 100, true},
		{"bytes=95-200", 100, 95, 100, true},
		{"bytes=-10", 100, 90, 100, true},
		{"bytes=100-", 100, 0, 0, false},
		{"bytes=0-", 0, 0, 0, false},
		{"bytes=5-4", 100, 0, 0, false},
		{"bytes=0-1,3-4", 100, 0, 0, false},
		{"items=0-1", 100, 0, 0, false},
	} {
		start, end, ok := parseRange(c.h, c.size)
		if ok != c.ok || (ok && (start != c.start || end != c.end)) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v; want %d, %d, %v", c.h, c.size, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

// TestMultipartRoutes: parts are assembled in number order and the
// upload's metadata is the object's.
func TestMultipartRoutes(t *testing.T) {
	creds := NewCredentials(t)
	srv := NewServer(t, "ns", "b")
	srv.Trust(creds)
	provider, err := common.ConfigurationProviderFromFileWithProfile(creds.ConfigFile, creds.Profile, "")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()
	do := func(method, path, body string, signBody bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL()+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		req.Header.Set("Content-Type", "application/json")
		signer := common.RequestSignerExcludeBody(provider)
		if signBody {
			signer = common.DefaultRequestSigner(provider)
		}
		if err := signer.Sign(req); err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := do("POST", "/n/ns/b/b/u", `{"object":"big","contentType":"text/x","metadata":{"opc-meta-sha256":"abc"}}`, true)
	var id string
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, after, ok := strings.Cut(string(body), `"uploadId":"`); ok {
		id, _, _ = strings.Cut(after, `"`)
	}
	if resp.StatusCode != 200 || id == "" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	etags := map[int]string{}
	for _, p := range []struct {
		num  int
		data string
	}{{2, "world"}, {1, "hello "}} {
		resp := do("PUT", fmt.Sprintf("/n/ns/b/b/u/big?uploadId=%s&uploadPartNum=%d", id, p.num), p.data, false)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("part %d: %d", p.num, resp.StatusCode)
		}
		etags[p.num] = resp.Header.Get("ETag")
	}
	resp = do("POST", "/n/ns/b/b/u/big?uploadId="+id,
		fmt.Sprintf(`{"partsToCommit":[{"partNum":2,"etag":%q},{"partNum":1,"etag":%q}]}`, etags[2], etags[1]), true)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(resp.Header.Get("opc-multipart-md5"), "-2") {
		t.Fatalf("commit: %d, multipart md5 %q", resp.StatusCode, resp.Header.Get("opc-multipart-md5"))
	}
	resp = do("GET", "/n/ns/b/b/o/big", "", false)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "hello world" || resp.Header.Get("Content-Type") != "text/x" || resp.Header.Get("opc-meta-sha256") != "abc" {
		t.Fatalf("object: %q, %v", got, resp.Header)
	}
	if len(srv.PendingUploads()) != 0 {
		t.Fatalf("uploads left: %q", srv.PendingUploads())
	}
}
