package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/zeroci/zeroci/modules"
)

// Cluster key format and places.
const (
	// KeyFileName is the key a process creates in its data directory when
	// cluster.secret_file is not set, so that processes sharing a data
	// directory on one host authenticate each other.
	KeyFileName = "cluster.key"
	// MinKeyBytes is the least key material a key file must hold.
	MinKeyBytes = 32
	// maxKeyFile bounds what is read from a key file.
	maxKeyFile = 4096
)

// ClusterKey returns the key that authenticates this process's
// cross-process messages, or nil when it runs every module in-process and
// has none.
//
// Key files hold the key as hex digits (at least 64, i.e. 32 bytes;
// surrounding white space is ignored), e.g. from `openssl rand -hex 32`,
// and must not be readable by group or others. With cluster.secret_file
// set, that file is the key and must exist. Without it, every tcp endpoint
// this process binds or reaches must be on loopback, and the key is
// DATA_DIR/cluster.key, created (0600) on first use.
//
// Problems the user can fix are *Error (ErrInvalid). Call after Validate.
func (c *Config) ClusterKey() ([]byte, error) {
	if c.RunsAll() {
		return nil, nil
	}
	if c.Cluster.SecretFile != "" {
		return readKeyFile(c.Cluster.SecretFile, c.Origin("cluster.secret_file"), "cluster.secret_file")
	}
	local := c.LocalModules()
	byModule := c.Cluster.Endpoints.ByModule()
	for _, name := range modules.Names() {
		raw, ok := byModule[name]
		if !ok {
			continue
		}
		e, err := ParseEndpoint(raw)
		if err != nil || e.Loopback() {
			continue // Validate reports bad endpoints
		}
		verb := "reach"
		if slices.Contains(local, name) {
			verb = "bind"
		}
		return nil, &Error{Problems: []Problem{{
			Origin: c.Origin("cluster.endpoints." + name),
			Msg:    fmt.Sprintf("cluster.secret_file is required to %s %s (not loopback)", verb, raw),
		}}}
	}
	return loadOrCreateKey(filepath.Join(c.DataDir, KeyFileName))
}

// readKeyFile reads and checks a hex key file; key names the setting for
// error messages.
func readKeyFile(path, origin, key string) ([]byte, error) {
	fail := func(format string, args ...any) error {
		return &Error{Problems: []Problem{{Origin: origin, Key: key, Msg: fmt.Sprintf(format, args...)}}}
	}
	// Stat before Open: opening a FIFO would block until a writer comes.
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fail("%s does not exist (create one with: openssl rand -hex 32 > %s; chmod 600 %s)", path, path, path)
	}
	if err != nil {
		return nil, fail("%v", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fail("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail("%v", err)
	}
	defer f.Close()
	if info, err = f.Stat(); err != nil {
		return nil, fail("%v", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fail("%s is accessible by group or others (mode %#o); run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fail("%v", err)
	}
	if len(data) > maxKeyFile {
		return nil, fail("%s is over %d bytes; a key file holds only hex digits", path, maxKeyFile)
	}
	text := strings.TrimSpace(string(data))
	k, err := hex.DecodeString(text)
	if err != nil {
		return nil, fail("%s must hold the key as hex digits (e.g. from openssl rand -hex 32)", path)
	}
	if len(k) < MinKeyBytes {
		return nil, fail("%s holds %d bytes of key, want at least %d (%d hex digits)", path, len(k), MinKeyBytes, 2*MinKeyBytes)
	}
	return k, nil
}

// loadOrCreateKey returns the key in path, creating it with fresh random
// bytes if it does not exist. Processes racing to create it end up with the
// same key: the file appears complete, by link, or not at all.
func loadOrCreateKey(path string) ([]byte, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := createKey(path); err != nil {
			return nil, fmt.Errorf("config: cluster key: %w", err)
		}
	}
	return readKeyFile(path, "", "cluster key "+path)
}

func createKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	k := make([]byte, MinKeyBytes)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".cluster.key-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(k) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
