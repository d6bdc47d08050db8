package logging

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/zeroci/zeroci/contracts"
)

const (
	out  = contracts.StreamStdout
	errs = contracts.StreamStderr
)

type maskedLine struct {
	stream contracts.Stream
	text   string
}

// maskAll masks lines one after another with a fresh masker.
func maskAll(secrets []string, lines []maskedLine) []string {
	m := newMasker(cleanSecrets(secrets))
	var got []string
	for _, l := range lines {
		got = append(got, m.mask(l.stream, l.text))
	}
	return got
}

func TestMaskTable(t *testing.T) {
	pem := "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34\nGkxFhD90vcNLYLInF\n-----END KEY-----"
	tests := []struct {
		name    string
		secrets []string
		lines   []maskedLine
		want    []string
	}{
		{"none", nil, []maskedLine{{out, "hunter2"}}, []string{"hunter2"}},
		{"in a line", []string{"hunter2"}, []maskedLine{{out, "pw=hunter2 ok"}}, []string{"pw=*** ok"}},
		{"twice, overlapping secrets", []string{"abcd", "cdef"},
			[]maskedLine{{out, "x abcdef y abcd"}}, []string{"x *** y ***"}},
		{"whole line", []string{"hunter2"}, []maskedLine{{out, "hunter2"}}, []string{"***"}},
		{"trailing newline trimmed", []string{"key\n"}, []maskedLine{{out, "a key b"}}, []string{"a *** b"}},
		{"only newlines", []string{"\n\r\n"}, []maskedLine{{out, "a"}}, []string{"a"}},
		{"multi-line secret", []string{pem},
			[]maskedLine{
				{out, "key: -----BEGIN KEY-----"}, {out, "MIIBOgIBAAJBAKj34"}, {out, "GkxFhD90vcNLYLInF"},
				{out, "-----END KEY----- done"}, {out, "after"},
			},
			[]string{"key: ***", "***", "***", "*** done", "after"}},
		{"multi-line secret, other stream between", []string{pem},
			[]maskedLine{
				{out, "-----BEGIN KEY-----"}, {errs, "warning: x"}, {out, "MIIBOgIBAAJBAKj34"},
				{errs, "-----BEGIN KEY-----"}, {out, "GkxFhD90vcNLYLInF"}, {out, "-----END KEY-----"},
			},
			[]string{"***", "warning: x", "***", "***", "***", "***"}},
		{"a beginning that does not go on is masked", []string{"abc\ndef"},
			[]maskedLine{{out, "xxabc"}, {out, "zzz"}, {out, "abc"}, {out, "def!"}},
			[]string{"xx***", "zzz", "***", "***!"}},
		{"a newline in the secret needs a line break", []string{"ab\ncd"},
			[]maskedLine{{out, "abcd"}, {out, "ab cd"}}, []string{"abcd", "ab cd"}},
		{"crlf", []string{"a1\r\nb2"}, []maskedLine{{out, "x a1\r"}, {out, "b2 y"}}, []string{"x ***", "*** y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := maskAll(tt.secrets, tt.lines)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestMaskSplitAtCut splits a secret at every position across a line the
// runner cut (MaxLogLineLen bytes, no newline in between), or, where the
// split falls on one of its newlines, across a long line ending there.
func TestMaskSplitAtCut(t *testing.T) {
	for _, secret := range []string{"s3cr3t-t0ken-9f8e7d", "ab\ncd\nef"} {
		for k := 1; k < len(secret); k++ {
			head := strings.TrimSuffix(secret[:k], "\n")
			tail := strings.TrimPrefix(secret[len(head):], "\n")
			filler := strings.Repeat("x", contracts.MaxLogLineLen-len(head))
			lines := []maskedLine{{out, filler + head}}
			// The line does not grow: a short masked tail takes a few x's.
			want := []string{filler[:min(len(filler), contracts.MaxLogLineLen-3)] + "***"}
			parts := strings.Split(tail+" after", "\n")
			for i, p := range parts {
				lines = append(lines, maskedLine{out, p})
				want = append(want, "***")
				if i == len(parts)-1 {
					want[len(want)-1] = "*** after"
				}
			}
			lines = append(lines, maskedLine{out, "next"})
			want = append(want, "next")
			if got := maskAll([]string{secret}, lines); !slices.Equal(got, want) {
				t.Fatalf("secret %q split at %d: got %q, want %q", secret, k, short(got), short(want))
			}
		}
	}
}

// TestMaskSplitLines splits a multi-line secret at each of its line
// breaks, with text before and after, masking the lines through a context
// saved and restored in between (as across a restart).
func TestMaskSplitLines(t *testing.T) {
	secret := "first-line\nsecond-line\nthird"
	lines := []maskedLine{{out, "pre first-line"}, {out, "second-line"}, {out, "third post"}}
	want := []string{"pre ***", "***", "*** post"}
	for k := 1; k < len(lines); k++ {
		m := newMasker(cleanSecrets([]string{secret}))
		var got []string
		for _, l := range lines[:k] {
			got = append(got, m.mask(l.stream, l.text))
		}
		m2 := newMasker(cleanSecrets([]string{secret}))
		m2.restore(m.context())
		for _, l := range lines[k:] {
			got = append(got, m2.mask(l.stream, l.text))
		}
		if !slices.Equal(got, want) {
			t.Errorf("split after line %d: got %q, want %q", k, got, want)
		}
	}
}

// TestMaskRandom compares the masker with a slow reference on random
// text over a small alphabet, so that secrets occur, overlap and start
// at line ends often, with lines of up to 8 bytes of which those of 5 or
// more count as cut.
func TestMaskRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "ab\n"[rng.IntN(3)]
		}
		return string(b)
	}
	const cut = 5
	for round := range 5000 {
		var secrets []string
		for range 1 + rng.IntN(3) {
			secrets = append(secrets, word(1+rng.IntN(8)))
		}
		secrets = cleanSecrets(secrets)
		var lines []string
		for range 1 + rng.IntN(8) {
			lines = append(lines, strings.ReplaceAll(word(rng.IntN(9)), "\n", ""))
		}
		m := newMasker(secrets)
		if m != nil {
			m.cut = cut
		}
		for i, line := range lines {
			got := m.mask(out, line)
			if want := referenceMask(secrets, lines[:i+1], cut); got != want {
				t.Fatalf("round %d: secrets %q, lines %q: line %d masked %q, want %q", round, secrets, lines, i, got, want)
			}
		}
	}
}

// referenceMask masks the last of lines the slow way, twice: joining the
// lines with newlines, except after lines of cut bytes or more, which are
// joined with nothing, and then with newlines only. Each time it masks
// every byte of the last line that an occurrence of a secret covers, and
// the tail from where the longest end of the text that is a proper
// beginning of a secret starts.
func referenceMask(secrets []string, lines []string, cut int) string {
	last := lines[len(lines)-1]
	masked := make([]bool, len(last))
	for pass := range 2 {
		var text string
		var start int
		for _, l := range lines {
			start = len(text)
			text += l
			if len(l) < cut || pass == 1 {
				text += "\n"
			}
		}
		mark := func(from, to int) {
			for i := max(from, start); i < min(to, start+len(last)); i++ {
				masked[i-start] = true
			}
		}
		for _, s := range secrets {
			for i := 0; i+len(s) <= len(text); i++ {
				if text[i:i+len(s)] == s {
					mark(i, i+len(s))
				}
			}
			for k := len(s) - 1; k > 0; k-- {
				if strings.HasSuffix(text, s[:k]) {
					mark(len(text)-k, len(text))
					break
				}
			}
		}
	}
	var spans []span
	for i := 0; i < len(last); i++ {
		if masked[i] {
			j := i
			for j < len(last) && masked[j] {
				j++
			}
			spans = append(spans, span{i, j})
			i = j
		}
	}
	return applySpans(last, spans)
}

func short(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > 40 {
			l = fmt.Sprintf("%s...(%d bytes)...%s", l[:10], len(l), l[len(l)-20:])
		}
		out[i] = l
	}
	return out
}
