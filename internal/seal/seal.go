// Package seal keeps secrets unreadable at rest: AES-256-GCM with a key
// from a key file, and additional data that binds a sealed value to its
// place (a repository's secret, a job's masks), so a sealed value copied
// elsewhere does not open. The data store and the logging module use it.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyLen is the key's length: AES-256.
const KeyLen = 32

// ErrOpen: a sealed value that is malformed, altered, bound to other
// additional data, or sealed under another key.
var ErrOpen = errors.New("seal: the value does not open with this key (was the key file replaced?)")

// Box seals and opens values. Safe for concurrent use.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a KeyLen-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("seal: key is %d bytes, want %d", len(key), KeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Overhead is what Seal adds to a value: the nonce and the tag.
func (b *Box) Overhead() int { return b.aead.NonceSize() + b.aead.Overhead() }

// Seal returns nonce || ciphertext || tag of plain, bound to ad.
func (b *Box) Seal(plain, ad []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24+)
	return b.aead.Seal(nonce, nonce, plain, ad)
}

// Open returns the value Seal sealed with the same ad, or ErrOpen.
func (b *Box) Open(sealed, ad []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// LoadKey reads a key file (2*KeyLen hex digits, surrounding white space
// ignored). If it does not exist and create is set, it creates one with
// a random key, mode 0600, atomically: processes starting at once end up
// with one key, and a crash leaves no half-written key.
func LoadKey(path string, create bool) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != KeyLen {
		return nil, fmt.Errorf("seal: key file %s: want %d hex digits (AES-256)", path, 2*KeyLen)
	}
	return key, nil
}

func createKey(path string) ([]byte, error) {
	key := make([]byte, KeyLen)
	rand.Read(key)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	// Link, not rename: if another process created the key meanwhile,
	// keep and use its key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadKey(path, false)
		}
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return key, nil
}
