package datastore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/zeroci/zeroci/contracts"
)

// keyLen is the sealing key's size: AES-256.
const keyLen = 32

// sealer seals secrets with AES-256-GCM. The additional data binds a
// sealed value to where it belongs (a repository's secret NAME, its
// webhook secret), so a sealed value copied elsewhere does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != keyLen {
		return nil, fmt.Errorf("datastore: sealing key is %d bytes, want %d", len(key), keyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(plain contracts.Secret, aad string) contracts.Sealed {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("datastore: no randomness: %v", err)) // crypto/rand never fails on Linux
	}
	out := s.aead.Seal(nonce, nonce, []byte(plain), []byte(aad))
	return contracts.Sealed(base64.StdEncoding.EncodeToString(out))
}

var errUnseal = errors.New("datastore: a sealed secret does not open with this data store's key")

func (s *sealer) open(sealed contracts.Sealed, aad string) (contracts.Secret, error) {
	raw, err := base64.StdEncoding.DecodeString(string(sealed))
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return "", errUnseal
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(aad))
	if err != nil {
		return "", errUnseal
	}
	return contracts.Secret(plain), nil
}

func secretAAD(repo, name string) string { return "secret\x00" + repo + "\x00" + name }
func webhookAAD(repo string) string      { return "webhook\x00" + repo }

// loadKey reads the sealing key (64 hex digits) from path, creating it
// with a random key (0600) if create is set and it does not exist.
func loadKey(path string, create bool) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("datastore: key file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != keyLen {
		return nil, fmt.Errorf("datastore: key file %s: want %d hex digits (AES-256)", path, 2*keyLen)
	}
	return key, nil
}

func createKey(path string) ([]byte, error) {
	key := make([]byte, keyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("datastore: key file: %w", err)
	}
	// Write to a temporary name and link it into place: two processes
	// starting at once end up with one key, and a crash leaves no half
	// written key file.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, fmt.Errorf("datastore: key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("datastore: key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("datastore: key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("datastore: key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path, false)
		}
		return nil, fmt.Errorf("datastore: key file: %w", err)
	}
	return key, nil
}
