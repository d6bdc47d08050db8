//go:build unix

package executor

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// readLines reads r to its end and calls emit for each line (see Output):
// split on '\n', invalid UTF-8 replaced with U+FFFD byte by byte, lines
// longer than max bytes (after replacement) cut into pieces of at most max
// bytes at rune boundaries. A closed reader (os.ErrClosed, from the drain
// bound) ends the input like EOF. max must be at least utf8.UTFMax.
func readLines(r io.Reader, max int, emit func(string)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var pending []byte // a line's start, when it spans several reads
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil && len(pending) == 0:
			emitLine(chunk[:len(chunk)-1], max, emit)
		case err == nil:
			pending = append(pending, chunk...)
			emitLine(pending[:len(pending)-1], max, emit)
			pending = pending[:0]
		case errors.Is(err, bufio.ErrBufferFull):
			pending = append(pending, chunk...)
			// Keep a rune's worth beyond max so a piece never ends in a
			// rune whose bytes have not all arrived.
			for len(pending) > max+utf8.UTFMax {
				n, text := cutPiece(pending, max)
				emit(text)
				pending = append(pending[:0], pending[n:]...)
			}
		default:
			pending = append(pending, chunk...)
			if len(pending) > 0 {
				emitLine(pending, max, emit)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// emitLine emits one whole line, in pieces when it is too long.
func emitLine(line []byte, max int, emit func(string)) {
	if len(line) <= max && utf8.Valid(line) {
		emit(string(line))
		return
	}
	for first := true; first || len(line) > 0; first = false {
		n, text := cutPiece(line, max)
		emit(text)
		line = line[n:]
	}
}

// cutPiece returns the longest prefix of b whose sanitized form fits in max
// bytes: how many bytes of b it used and the text.
func cutPiece(b []byte, max int) (int, string) {
	var sb strings.Builder
	i := 0
	for i < len(b) {
		r, size := utf8.DecodeRune(b[i:])
		cost := size
		if r == utf8.RuneError && size == 1 {
			cost = len(string(utf8.RuneError))
		}
		if sb.Len()+cost > max {
			break
		}
		if cost == size {
			sb.Write(b[i : i+size])
		} else {
			sb.WriteRune(utf8.RuneError)
		}
		i += size
	}
	return i, sb.String()
}
