package ocitest

import (
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// MaxClockSkew is how far a request's date may be from the server's
// clock, as with the real service.
const MaxClockSkew = 5 * time.Minute

// Credentials are an API signing key and an OCI config file that uses it,
// written to a test's temporary directory.
type Credentials struct {
	// ConfigFile is the OCI config file; Profile its section.
	ConfigFile string
	Profile    string
	// KeyFile is the PEM private key the config file names.
	KeyFile string
	// Tenancy, User and Fingerprint make up the key id.
	Tenancy, User, Fingerprint string
	// Region is written to the config file (none if empty).
	Region string
	// PublicKey verifies the key's signatures.
	PublicKey *rsa.PublicKey
}

// KeyID is the keyId the SDK signs with: tenancy/user/fingerprint.
func (c Credentials) KeyID() string { return c.Tenancy + "/" + c.User + "/" + c.Fingerprint }

// NewCredentials makes an RSA key pair and a config file (profile
// "ZEROCI", region us-ashburn-1) in t.TempDir(). The file's DEFAULT
// profile names a user the server does not know.
func NewCredentials(t testing.TB) Credentials {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("ocitest: generate key: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatalf("ocitest: marshal public key: %v", err)
	}
	sum := md5.Sum(der)
	fp := make([]string, len(sum))
	for i, b := range sum {
		fp[i] = hex.EncodeToString([]byte{b})
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		t.Fatalf("ocitest: %v", err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatalf("ocitest: %v", err)
	}
	c := Credentials{
		Profile:     "ZEROCI",
		KeyFile:     keyFile,
		Tenancy:     "ocid1.tenancy.oc1..test" + hex.EncodeToString(id),
		User:        "ocid1.user.oc1..test" + hex.EncodeToString(id),
		Fingerprint: strings.Join(fp, ":"),
		Region:      "us-ashburn-1",
		PublicKey:   &key.PublicKey,
	}
	return c.WithConfig(t, c.Region, c.KeyFile)
}

// WithConfig writes a new config file for c's identity with the given
// region (none if empty) and private key file, and returns c using it.
// With another Credentials' KeyFile, the identity stays the same but the
// signatures no longer verify.
func (c Credentials) WithConfig(t testing.TB, region, keyFile string) Credentials {
	t.Helper()
	c.Region, c.KeyFile = region, keyFile
	var b strings.Builder
	for _, p := range []struct{ name, user string }{{"DEFAULT", c.User + "unknown"}, {c.Profile, c.User}} {
		fmt.Fprintf(&b, "[%s]\nuser=%s\nfingerprint=%s\nkey_file=%s\ntenancy=%s\n", p.name, p.user, c.Fingerprint, c.KeyFile, c.Tenancy)
		if region != "" {
			fmt.Fprintf(&b, "region=%s\n", region)
		}
		b.WriteString("\n")
	}
	f, err := os.CreateTemp(t.TempDir(), "config-*")
	if err != nil {
		t.Fatalf("ocitest: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatalf("ocitest: %v", err)
	}
	c.ConfigFile = f.Name()
	return c
}

// signature is a parsed Authorization header.
type signature struct {
	keyID   string
	headers []string
	sig     []byte
}

func parseAuthorization(h string) (signature, error) {
	rest, ok := strings.CutPrefix(h, "Signature ")
	if !ok {
		return signature{}, fmt.Errorf("authorization is not a Signature")
	}
	params := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return signature{}, fmt.Errorf("malformed signature parameter %q", part)
		}
		if _, dup := params[k]; dup {
			return signature{}, fmt.Errorf("signature parameter %q twice", k)
		}
		params[k] = v[1 : len(v)-1]
	}
	for _, k := range []string{"version", "keyId", "algorithm", "headers", "signature"} {
		if params[k] == "" {
			return signature{}, fmt.Errorf("signature parameter %q missing", k)
		}
	}
	if params["version"] != "1" {
		return signature{}, fmt.Errorf("signature version %q, want 1", params["version"])
	}
	if params["algorithm"] != "rsa-sha256" {
		return signature{}, fmt.Errorf("signature algorithm %q, want rsa-sha256", params["algorithm"])
	}
	sig, err := base64.StdEncoding.DecodeString(params["signature"])
	if err != nil {
		return signature{}, fmt.Errorf("signature is not base64: %v", err)
	}
	return signature{keyID: params["keyId"], headers: strings.Fields(strings.ToLower(params["headers"])), sig: sig}, nil
}

// verify checks a request's signature. bodyHeaders says the body headers
// must be signed (POST, and PUT other than object and part uploads). body
// is the request's body when the caller read it already (JSON bodies), to
// check x-content-sha256 against.
func (s *Server) verify(r *http.Request, bodyHeaders bool, body []byte) error {
	auth := r.Header.Values("Authorization")
	if len(auth) != 1 {
		return fmt.Errorf("%d Authorization headers, want 1", len(auth))
	}
	sig, err := parseAuthorization(auth[0])
	if err != nil {
		return err
	}
	s.mu.Lock()
	pub := s.keys[sig.keyID]
	s.mu.Unlock()
	if pub == nil {
		return fmt.Errorf("unknown keyId %q", sig.keyID)
	}

	required := []string{"(request-target)", "host"}
	if bodyHeaders {
		required = append(required, "content-length", "content-type", "x-content-sha256")
	}
	for _, h := range required {
		if !slices.Contains(sig.headers, h) {
			return fmt.Errorf("header %q is not signed (signed: %q)", h, sig.headers)
		}
	}
	dateHeader := "date"
	if slices.Contains(sig.headers, "x-date") {
		dateHeader = "x-date"
	} else if !slices.Contains(sig.headers, "date") {
		return fmt.Errorf("neither date nor x-date is signed (signed: %q)", sig.headers)
	}
	date, err := http.ParseTime(r.Header.Get(dateHeader))
	if err != nil {
		return fmt.Errorf("%s header: %v", dateHeader, err)
	}
	if skew := time.Since(date); skew > MaxClockSkew || skew < -MaxClockSkew {
		return fmt.Errorf("%s %s is %v off the server's clock", dateHeader, date, skew)
	}

	lines := make([]string, len(sig.headers))
	for i, h := range sig.headers {
		var v string
		switch h {
		case "(request-target)":
			v = strings.ToLower(r.Method) + " " + r.RequestURI
		case "host":
			v = r.Host
		default:
			vs := r.Header.Values(h)
			if len(vs) != 1 {
				return fmt.Errorf("signed header %q appears %d times", h, len(vs))
			}
			v = vs[0]
		}
		lines[i] = h + ": " + v
	}
	digest := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig.sig); err != nil {
		return fmt.Errorf("signature does not verify with the key of %q", sig.keyID)
	}

	if slices.Contains(sig.headers, "content-length") && r.ContentLength >= 0 && r.Header.Get("Content-Length") != fmt.Sprint(r.ContentLength) {
		return fmt.Errorf("signed content-length %q, body has %d bytes", r.Header.Get("Content-Length"), r.ContentLength)
	}
	if want := r.Header.Get("X-Content-Sha256"); want != "" && body != nil {
		sum := sha256.Sum256(body)
		if got := base64.StdEncoding.EncodeToString(sum[:]); got != want {
			return fmt.Errorf("x-content-sha256 %s, body has %s", want, got)
		}
	}
	return nil
}
