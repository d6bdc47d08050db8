package ocistore

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Auth methods.
const (
	// AuthInstancePrincipal authenticates as the compute instance (its
	// certificate from the instance metadata service).
	AuthInstancePrincipal = "instance_principal"
	// AuthResourcePrincipal authenticates as the resource (function,
	// container instance) from the OCI_RESOURCE_PRINCIPAL_* environment.
	AuthResourcePrincipal = "resource_principal"
	// AuthConfigFile authenticates with an API key named in an OCI config
	// file.
	AuthConfigFile = "config_file"
)

// Defaults and limits.
const (
	// DefaultPartSize is the part size of multipart uploads, and the
	// largest object put in one request.
	DefaultPartSize = 64 << 20
	// MinPartSize is the smallest PartSize accepted. The service requires
	// 10 MiB for every part but the last: smaller sizes are for tests.
	MinPartSize = 1 << 20
	// MaxPartSize is the service's largest part.
	MaxPartSize = 50 << 30
	// MaxParts is the service's largest number of parts of an upload.
	MaxParts = 10000
	// DefaultTimeout is how long a request waits for the service's answer
	// to begin.
	DefaultTimeout = 60 * time.Second
	// DefaultMaxAttempts is how often a request is tried.
	DefaultMaxAttempts = 3
	// DefaultConfigFile is the OCI config file of auth config_file,
	// "~" being the user's home directory.
	DefaultConfigFile = "~/.oci/config"
	// DefaultProfile is the config file's section.
	DefaultProfile = "DEFAULT"
	// listConcurrency bounds the HEAD requests of one List.
	listConcurrency = 8
)

// Config configures a Store.
type Config struct {
	// Namespace and Bucket say where the objects go (required).
	Namespace string
	Bucket    string
	// Region is the service's region (e.g. eu-frankfurt-1). Optional:
	// the default is the region of the auth method (the config file's
	// region, the instance's, the resource principal's).
	Region string
	// Auth is AuthConfigFile, AuthInstancePrincipal or
	// AuthResourcePrincipal (required).
	Auth string
	// ConfigFile and Profile select the API key of AuthConfigFile
	// (defaults: DefaultConfigFile, DefaultProfile).
	ConfigFile string
	Profile    string
	// Endpoint, if set, replaces the region's endpoint: an http or https
	// URL without a path (tests, compatible services).
	Endpoint string
	// HTTPClient, if set, sends the requests; its Timeout then also bounds
	// how long a Get's body may take. By default the Store has its own
	// client, whose only time limit is Timeout.
	HTTPClient *http.Client
	// Timeout is how long a request waits for the service's answer to
	// begin (response headers) with the Store's own client (default
	// DefaultTimeout). The body of an answer then streams for as long as
	// it takes.
	Timeout time.Duration
	// MaxAttempts is how often a request is tried when it fails with 5xx,
	// 429 or a connection error, with exponential backoff from 100 ms to
	// 2 s between attempts (default DefaultMaxAttempts; 1 never retries).
	MaxAttempts int
	// PartSize is the size of multipart upload parts; content up to
	// PartSize is put in one request (default DefaultPartSize). A Put
	// holds one part in memory.
	PartSize int64
	// SpoolDir is where a Put of more than PartSize bytes whose digest
	// is not known beforehand (PutOptions.SHA256 empty) and whose reader
	// cannot seek keeps the content while it computes the digest, which
	// must be known when the multipart upload starts (default
	// os.TempDir()).
	SpoolDir string
}

// withDefaults fills in the defaults.
func (c Config) withDefaults() Config {
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Auth == AuthConfigFile {
		if c.ConfigFile == "" {
			c.ConfigFile = DefaultConfigFile
		}
		if c.Profile == "" {
			c.Profile = DefaultProfile
		}
	}
	return c
}

// Validate checks a Config (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	switch c.Auth {
	case AuthConfigFile, AuthInstancePrincipal, AuthResourcePrincipal:
	case "":
		errs = append(errs, fmt.Errorf("auth is required (%s, %s or %s)", AuthInstancePrincipal, AuthResourcePrincipal, AuthConfigFile))
	default:
		errs = append(errs, fmt.Errorf("auth %q: want %s, %s or %s", c.Auth, AuthInstancePrincipal, AuthResourcePrincipal, AuthConfigFile))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			errs = append(errs, fmt.Errorf("endpoint %q: want http(s)://host[:port] without a path", c.Endpoint))
		}
	}
	if c.PartSize < MinPartSize || c.PartSize > MaxPartSize {
		errs = append(errs, fmt.Errorf("part size %d: want %d..%d", c.PartSize, MinPartSize, int64(MaxPartSize)))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v is negative", c.Timeout))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max attempts %d: want at least 1", c.MaxAttempts))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ocistore: config: %w", err)
	}
	return nil
}
