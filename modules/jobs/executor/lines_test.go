//go:build unix

package executor

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/zeroci/zeroci/contracts"
)

func collect(t *testing.T, in string, max int, oneByte bool) []string {
	t.Helper()
	var got []string
	r := strings.NewReader(in)
	var err error
	if oneByte {
		err = readLines(iotest.OneByteReader(r), max, func(s string) { got = append(got, s) })
	} else {
		err = readLines(r, max, func(s string) { got = append(got, s) })
	}
	if err != nil {
		t.Fatalf("readLines: %v", err)
	}
	return got
}

func TestReadLines(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", nil},
		{"lines", "a\nb\n", []string{"a", "b"}},
		{"final line without newline", "a\nb", []string{"a", "b"}},
		{"empty lines", "\n\n", []string{"", ""}},
		{"carriage return kept", "a\r\n", []string{"a\r"}},
		{"exactly max", "abcdefgh\n", []string{"abcdefgh"}},
		{"twice max", "abcdefghABCDEFGH\n", []string{"abcdefgh", "ABCDEFGH"}},
		{"long line cut", "abcdefghij\nk", []string{"abcdefgh", "ij", "k"}},
		{"invalid byte replaced", "a\xffb\n", []string{"a\uFFFDb"}},
		{"replacement grows the line", "\xff\xff\xff", []string{"\uFFFD\uFFFD", "\uFFFD"}},
		{"cut at a rune boundary", "aaaaaaa€\n", []string{"aaaaaaa", "€"}},
		{"valid U+FFFD kept", "\uFFFD\n", []string{"\uFFFD"}},
		{"truncated rune at end", "ab\xe2\x82", []string{"ab\uFFFD\uFFFD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				if got := collect(t, tc.in, 8, oneByte); !slices.Equal(got, tc.want) {
					t.Errorf("oneByte=%v: got %q, want %q", oneByte, got, tc.want)
				}
			}
		})
	}
}

// greedy is the reference: each line sanitized rune by rune (an invalid
// byte is one U+FFFD) and packed greedily into pieces of at most max bytes.
func greedy(in string, max int) []string {
	var out []string
	lines := strings.Split(in, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for _, l := range lines {
		piece := ""
		for _, r := range l { // range yields U+FFFD per invalid byte
			if len(piece)+utf8.RuneLen(r) > max {
				out = append(out, piece)
				piece = ""
			}
			piece += string(r)
		}
		out = append(out, piece)
	}
	return out
}

func TestReadLinesRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "é", "€", "𝄞", "\xff", "\xe2", "\x82", "\n", "\r", "\uFFFD"}
	for i := 0; i < 500; i++ {
		var sb strings.Builder
		for n := rng.IntN(200); n > 0; n-- {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		in, max := sb.String(), utf8.UTFMax+rng.IntN(12)
		want := greedy(in, max)
		for _, oneByte := range []bool{false, true} {
			if got := collect(t, in, max, oneByte); !slices.Equal(got, want) {
				t.Fatalf("input %q max %d oneByte=%v:\n got %q\nwant %q", in, max, oneByte, got, want)
			}
		}
	}
}

// A line far longer than the reader's buffer, of 2-byte runes, arrives in
// valid pieces of at most MaxLogLineLen that add up to the line.
func TestReadLinesHugeLine(t *testing.T) {
	line := strings.Repeat("é", 150_000) + "x"
	got := collect(t, line+"\n", contracts.MaxLogLineLen, false)
	if len(got) != 5 {
		t.Fatalf("got %d pieces, want 5", len(got))
	}
	for i, p := range got {
		if len(p) > contracts.MaxLogLineLen || !utf8.ValidString(p) {
			t.Fatalf("piece %d: %d bytes, valid %v", i, len(p), utf8.ValidString(p))
		}
	}
	if strings.Join(got, "") != line {
		t.Fatal("pieces do not add up to the line")
	}
}
