package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key, err := LoadKey(filepath.Join(t.TempDir(), "k", "secrets.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	s := b.Seal([]byte("hunter2"), []byte("repo/web/A"))
	if bytes.Contains(s, []byte("hunter2")) || len(s) != len("hunter2")+b.Overhead() {
		t.Fatalf("sealed %x", s)
	}
	if p, err := b.Open(s, []byte("repo/web/A")); err != nil || string(p) != "hunter2" {
		t.Fatalf("open: %q %v", p, err)
	}
	if _, err := b.Open(s, []byte("repo/web/B")); !errors.Is(err, ErrOpen) {
		t.Fatalf("other ad: %v", err)
	}
	s[len(s)-1] ^= 1
	if _, err := b.Open(s, []byte("repo/web/A")); !errors.Is(err, ErrOpen) {
		t.Fatalf("altered: %v", err)
	}
	if _, err := b.Open([]byte("short"), nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("short: %v", err)
	}
	other, _ := New(bytes.Repeat([]byte{7}, KeyLen))
	if _, err := other.Open(b.Seal([]byte("x"), nil), nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := New([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.key")
	if _, err := LoadKey(path, false); err == nil {
		t.Fatal("missing key without create")
	}
	// Processes (goroutines here) starting at once end up with one key.
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadKey(path, true)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent starts made different keys")
		}
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", info, err)
	}
	if err := os.WriteFile(path, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path, true); err == nil {
		t.Fatal("a bad key file was accepted")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftovers: %v", entries)
	}
}
