package api

import (
	"testing"
	"time"
)

// TestNextInterval: the polling interval is the base right after a
// change and doubles while nothing changes, up to the ceiling.
func TestNextInterval(t *testing.T) {
	const base, ceiling = time.Minute, 10 * time.Minute
	var got []time.Duration
	iv := base
	for _, changed := range []bool{false, false, false, false, false, true, false} {
		iv = nextInterval(iv, base, ceiling, changed)
		got = append(got, iv)
	}
	want := []time.Duration{2 * time.Minute, 4 * time.Minute, 8 * time.Minute, ceiling, ceiling, base, 2 * time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("intervals %v, want %v", got, want)
		}
	}
	if iv := nextInterval(0, base, ceiling, false); iv != base {
		t.Fatalf("from nothing: %v, want the base", iv)
	}
}
