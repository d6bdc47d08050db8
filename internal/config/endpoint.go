package config

import (
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
)

// Endpoint schemes.
const (
	SchemeTCP    = "tcp"
	SchemeIPC    = "ipc"
	SchemeInproc = "inproc"
)

// MaxIPCPath is the longest Unix socket path the kernel accepts (the
// 108-byte sun_path less its terminating NUL).
const MaxIPCPath = 107

// Endpoint is a parsed cluster endpoint.
type Endpoint struct {
	Scheme string // tcp, ipc or inproc
	Host   string // tcp only
	Port   int    // tcp only
	Path   string // ipc socket path or inproc name
}

// ParseEndpoint parses and checks tcp://HOST:PORT, ipc:///ABSOLUTE/PATH and
// inproc://NAME. Port 0 is refused: another process could not find it.
//
// It is stricter than zmq.ValidateEndpoint (port 0, empty host) and explains
// more, but it is not a superset of it: this package must not import the
// transport (modules import config), so internal/server also asks
// zmq.ValidateEndpoint before it starts anything.
func ParseEndpoint(s string) (Endpoint, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Endpoint{}, fmt.Errorf("%q is not an endpoint (want tcp://HOST:PORT, ipc:///PATH or inproc://NAME)", s)
	}
	e := Endpoint{Scheme: scheme}
	if strings.IndexByte(rest, 0) >= 0 {
		return Endpoint{}, fmt.Errorf("%q contains a NUL byte", s)
	}
	switch scheme {
	case SchemeTCP:
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return Endpoint{}, fmt.Errorf("%q: want tcp://HOST:PORT", s)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return Endpoint{}, fmt.Errorf("%q: port must be a number from 1 to 65535 (other processes must know it)", s)
		}
		if host == "" {
			return Endpoint{}, fmt.Errorf("%q: missing host (use 0.0.0.0 or * to bind every interface)", s)
		}
		e.Host, e.Port = host, n
	case SchemeIPC:
		if rest == "" {
			return Endpoint{}, fmt.Errorf("%q: missing socket path", s)
		}
		if !strings.HasPrefix(rest, "/") {
			return Endpoint{}, fmt.Errorf("%q: the socket path must be absolute (ipc:///run/zeroci/blob.sock)", s)
		}
		if len(rest) > MaxIPCPath {
			return Endpoint{}, fmt.Errorf("ipc socket path is %d bytes, over the %d a Unix socket allows: %s", len(rest), MaxIPCPath, rest)
		}
		e.Path = rest
	case SchemeInproc:
		if rest == "" {
			return Endpoint{}, fmt.Errorf("%q: missing name", s)
		}
		e.Path = rest
	default:
		return Endpoint{}, fmt.Errorf("scheme %q is not supported (want tcp://, ipc:// or inproc://)", scheme)
	}
	return e, nil
}

// Loopback reports whether the endpoint cannot be reached from another
// host: ipc and inproc endpoints, and tcp on a loopback address or
// "localhost".
func (e Endpoint) Loopback() bool {
	if e.Scheme != SchemeTCP {
		return true
	}
	if strings.EqualFold(e.Host, "localhost") {
		return true
	}
	ip := net.ParseIP(e.Host)
	return ip != nil && ip.IsLoopback()
}

// ByModule returns the configured endpoints keyed by module name; modules
// without an endpoint are absent.
func (e Endpoints) ByModule() map[string]string {
	m := make(map[string]string)
	v := reflect.ValueOf(e)
	for i := 0; i < v.NumField(); i++ {
		if s := v.Field(i).String(); s != "" {
			m[yamlKey(v.Type().Field(i))] = s
		}
	}
	return m
}
