package logging

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/zeroci/zeroci/contracts"
)

// Masking.
//
// A secret registered with logging.open is replaced by maskText wherever it
// appears in a job's output, also when it spans lines: a PEM key printed
// over many lines, or a value the runner cut because its line was longer
// than contracts.MaxLogLineLen. Each stream (stdout, stderr) is matched on
// its own, as one text in which a line boundary stands for
//
//   - a newline, after a line shorter than cutLen, and
//   - a newline or nothing, after a line of at least cutLen bytes, which
//     its runner may have cut in the middle of a longer line.
//
// Lines are numbered and become visible as soon as they are stored, and a
// stored line never changes, so the masker cannot wait to see how a line's
// end continues. Instead it masks, in the line it emits, the longest tail
// that could be the beginning of a secret continuing into the next line
// (the "open" tail), and remembers the unmasked text of that tail (the
// context) to match what follows. If the next line completes the secret,
// its part is masked too; if not, the tail was masked needlessly. That
// over-masking is rare: after a short line the tail plus a newline must be
// a secret's beginning, which only happens for the first lines of a
// multi-line secret printed line by line. A secret is never visible in
// part, and no line waits.
//
// Leading and trailing line breaks of a secret are not part of the value
// that is masked ("key\n" as read from a file masks "key").

// maskText replaces a secret, or the part of one in a line.
const maskText = "***"

// cutLen is the shortest line a runner may have cut from a longer one: it
// cuts at a UTF-8 boundary at most contracts.MaxLogLineLen bytes in.
const cutLen = contracts.MaxLogLineLen - 3

// pattern is one secret with its KMP failure function.
type pattern struct {
	b    []byte
	fail []int32 // fail[i]: length of the longest proper border of b[:i+1]
}

func newPattern(s string) pattern {
	b := []byte(s)
	fail := make([]int32, len(b))
	for i, k := 1, int32(0); i < len(b); i++ {
		for k > 0 && b[i] != b[k] {
			k = fail[k-1]
		}
		if b[i] == b[k] {
			k++
		}
		fail[i] = k
	}
	return pattern{b: b, fail: fail}
}

// scan runs the pattern over t. It calls match with the end of every
// occurrence and returns the length of the longest proper prefix of the
// pattern that t ends with.
func (p pattern) scan(t []byte, match func(end int)) int {
	k := int32(0)
	for i, c := range t {
		for k > 0 && c != p.b[k] {
			k = p.fail[k-1]
		}
		if c == p.b[k] {
			k++
		}
		if int(k) == len(p.b) {
			match(i + 1)
			k = p.fail[k-1]
		}
	}
	return int(k)
}

// span is a byte range [from, to) of a line's text.
type span struct{ from, to int }

// ctxLine is a line kept in a stream's context, unmasked.
type ctxLine struct {
	text string
}

// masker masks one job's lines. Not safe for concurrent use.
type masker struct {
	pats []pattern
	cut  int // cutLen; tests make it small
	// ctx holds, per stream, the unmasked lines from the one where the
	// open tail starts to the stream's last line; empty when nothing open.
	ctx map[contracts.Stream][]ctxLine
	// Scratch space of mask.
	t      []byte
	starts []int
}

// cleanSecrets returns the values to mask: trimmed of leading and
// trailing line breaks, without empty ones and duplicates, sorted.
func cleanSecrets(masks []string) []string {
	var out []string
	for _, m := range masks {
		if m = strings.Trim(m, "\r\n"); m != "" {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// newMasker returns a masker for secrets (already cleaned), or nil if
// there is nothing to mask.
func newMasker(secrets []string) *masker {
	if len(secrets) == 0 {
		return nil
	}
	m := &masker{ctx: make(map[contracts.Stream][]ctxLine), cut: cutLen}
	for _, s := range secrets {
		m.pats = append(m.pats, newPattern(s))
	}
	return m
}

// mask returns line's text as it is stored: with every secret, part of a
// secret, and open tail replaced by maskText. It updates the context.
func (m *masker) mask(stream contracts.Stream, text string) string {
	if m == nil {
		return text
	}
	lines := append(m.ctx[stream], ctxLine{text: text})
	last := len(lines) - 1
	var spans []span
	openLine, openAt := len(lines), 0 // where the open tail starts
	soft := false
	for _, l := range lines {
		soft = soft || len(l.text) >= m.cut
	}
	for pass := range 2 {
		if pass == 1 && !soft {
			break
		}
		// Lay the lines out as one text, boundaries included, the last
		// line's too: a secret continuing after it starts with a newline.
		t, starts := m.t[:0], m.starts[:0]
		for _, l := range lines {
			starts = append(starts, len(t))
			t = append(t, l.text...)
			if len(l.text) < m.cut || pass == 1 {
				t = append(t, '\n')
			}
		}
		m.t, m.starts = t, starts
		ls := starts[last]
		le := ls + len(text)
		open := len(t)
		for _, p := range m.pats {
			k := p.scan(t, func(end int) {
				// Only the last line's part is new: the earlier ones were
				// emitted with this range already masked as open.
				if from, to := max(end-len(p.b), ls), min(end, le); from < to {
					spans = append(spans, span{from - ls, to - ls})
				}
			})
			open = min(open, len(t)-k)
		}
		// The line the open tail starts in, and where in it.
		for i := range lines {
			end := starts[i] + len(lines[i].text)
			if open < end || open == end && i == last && open < len(t) {
				if i < openLine || i == openLine && open-starts[i] < openAt {
					openLine, openAt = i, max(open-starts[i], 0)
				}
				break
			}
		}
	}
	switch {
	case openLine < last && text != "":
		spans = append(spans, span{0, len(text)})
	case openLine == last && openAt < len(text):
		spans = append(spans, span{openAt, len(text)})
	}
	if openLine <= last {
		m.ctx[stream] = slices.Clip(lines[openLine:])
	} else {
		delete(m.ctx, stream)
	}
	masked := applySpans(text, spans)
	if len(masked) > contracts.MaxLogLineLen {
		// maskText is longer than a run of one or two bytes: widen such
		// runs over their neighbours, so that the line does not grow.
		masked = applySpans(text, widen(text, spans))
	}
	return masked
}

// widen extends every span shorter than maskText over the whole runes
// next to it, first before it, until it is as long or reaches the line's
// edges.
func widen(text string, spans []span) []span {
	out := make([]span, len(spans))
	for i, s := range spans {
		for s.to-s.from < len(maskText) && s.from > 0 {
			_, n := utf8.DecodeLastRuneInString(text[:s.from])
			s.from -= n
		}
		for s.to-s.from < len(maskText) && s.to < len(text) {
			_, n := utf8.DecodeRuneInString(text[s.to:])
			s.to += n
		}
		out[i] = s
	}
	return out
}

// applySpans replaces each run of masked bytes of text by maskText.
func applySpans(text string, spans []span) string {
	if len(spans) == 0 {
		return text
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	var b strings.Builder
	b.Grow(len(text))
	pos := 0
	for i := 0; i < len(spans); {
		from, to := spans[i].from, spans[i].to
		for i++; i < len(spans) && spans[i].from <= to; i++ {
			to = max(to, spans[i].to)
		}
		b.WriteString(text[pos:from])
		b.WriteString(maskText)
		pos = to
	}
	b.WriteString(text[pos:])
	return b.String()
}

// endStreams forgets the context: the output ended (a new attempt starts
// with a new process).
func (m *masker) endStreams() {
	if m != nil {
		clear(m.ctx)
	}
}

// context returns the unmasked context, for the job's file (sealed).
func (m *masker) context() map[contracts.Stream][]string {
	if m == nil || len(m.ctx) == 0 {
		return nil
	}
	out := make(map[contracts.Stream][]string, len(m.ctx))
	for s, lines := range m.ctx {
		for _, l := range lines {
			out[s] = append(out[s], l.text)
		}
	}
	return out
}

// restore sets the context read back from the job's file.
func (m *masker) restore(ctx map[contracts.Stream][]string) {
	if m == nil {
		return
	}
	clear(m.ctx)
	for s, lines := range ctx {
		for _, l := range lines {
			m.ctx[s] = append(m.ctx[s], ctxLine{text: l})
		}
	}
}
