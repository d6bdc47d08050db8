package logging

import (
	"strings"
	"testing"

	"github.com/zeroci/zeroci/contracts"
)

func tailLines(from, n int64, text string) []contracts.LogLine {
	out := make([]contracts.LogLine, n)
	for i := range out {
		out[i] = contracts.LogLine{N: from + int64(i), Text: text}
	}
	return out
}

func TestTailCache(t *testing.T) {
	var c tailCache
	if _, ok := c.get(1, 10, maxReadBytes); ok {
		t.Fatal("an empty cache answered")
	}
	c.add(tailLines(1, 5, "a"))
	c.add(tailLines(4, 4, "b")) // overlaps 4-5: keeps what it holds, adds 6-7
	got, ok := c.get(3, 5, maxReadBytes)
	if !ok || len(got) != 5 || got[0].N != 3 || got[1].Text != "a" || got[2].N != 5 || got[3].N != 6 || got[3].Text != "b" {
		t.Fatalf("get(3, 5) = %+v, %v", got, ok)
	}
	if _, ok := c.get(6, 5, maxReadBytes); ok {
		t.Fatal("a read past the cache's end was answered in part")
	}
	if _, ok := c.get(0, 1, maxReadBytes); ok {
		t.Fatal("a line before the cache was answered")
	}
	// The byte budget cuts a read short, as a read of the file would.
	if got, ok := c.get(1, 7, 2*lineJSON+4); !ok || len(got) != 2 {
		t.Fatalf("get with a budget of two lines = %d lines, %v", len(got), ok)
	}
	if got, ok := c.get(1, 7, 1); !ok || len(got) != 1 {
		t.Fatalf("get with a tiny budget = %d lines, %v; want one", len(got), ok)
	}
	// A gap starts the cache again.
	c.add(tailLines(20, 2, "c"))
	if _, ok := c.get(7, 1, maxReadBytes); ok {
		t.Fatal("line 7 is still cached after a gap")
	}
	if got, ok := c.get(20, 2, maxReadBytes); !ok || len(got) != 2 {
		t.Fatalf("after a gap: %+v %v", got, ok)
	}
	// A handed-out slice keeps its lines when the cache moves on.
	held, _ := c.get(20, 2, maxReadBytes)
	c.add(tailLines(22, maxTailLines, "d"))
	if held[0].N != 20 || held[1].Text != "c" {
		t.Fatalf("a returned slice changed: %+v", held)
	}
	if len(c.lines) != maxTailLines || c.lines[0].N != 22 || c.lines[len(c.lines)-1].N != 22+maxTailLines-1 {
		t.Fatalf("%d lines cached, from %d", len(c.lines), c.lines[0].N)
	}
	// Big lines are bounded by bytes, keeping at least the newest one.
	big := strings.Repeat("x", maxTailBytes/2+1)
	c.add(tailLines(22+maxTailLines, 3, big))
	if len(c.lines) != 1 || c.bytes != len(big) {
		t.Fatalf("after big lines: %d lines, %d bytes", len(c.lines), c.bytes)
	}
	c.reset()
	if _, ok := c.get(22+maxTailLines+2, 1, maxReadBytes); ok {
		t.Fatal("reset left lines")
	}
}
