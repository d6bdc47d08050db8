package contracts

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Hand-written JSON for the log messages.
//
// AppendLog and LogLines carry up to thousands of LogLines each, and
// encoding/json (reflection, a validating pre-scan of every payload, a
// re-compaction of every MarshalJSON result) cost most of the logging
// module's CPU. LogLine, AppendLog and LogLines are therefore encoded and
// decoded by the code below, which is held to encoding/json's behaviour
// for these types by differential tests (logline_json_test.go):
//
//   - encoding writes exactly the bytes encoding/json writes for the plain
//     structs with HTML escaping off (as encodeJSON does): fields in
//     declaration order, strings escaped as encoding/json escapes them
//     (invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped), times by
//     time.Time's own RFC 3339 appender, nil Lines as null;
//   - decoding accepts exactly what decodeJSON (a json.Decoder with
//     DisallowUnknownFields) accepts, and decodes it to the same value:
//     keys matched case-insensitively as encoding/json folds them, the
//     last of duplicate keys winning (an object decoded into the existing
//     value, an array reusing the slice's elements), null leaving a field
//     as it is except for Lines (set to nil), integers in encoding/json's
//     grammar and range, times through time.Time's own parser on the raw
//     string (escapes included, as time.Time.UnmarshalJSON does), strings
//     unescaped in full (\uXXXX surrogate pairs; lone surrogates and
//     invalid UTF-8 become U+FFFD).
//
// It never panics: every read is bounds-checked and bad input returns an
// error. On an error the target may be partly written, as with
// encoding/json.

// jsonAppender is implemented by messages with a hand-written encoder;
// encodeJSON calls it instead of encoding/json (which would re-scan and
// compact the output of MarshalJSON).
type jsonAppender interface {
	// appendJSON appends the value's compact JSON to dst.
	appendJSON(dst []byte) ([]byte, error)
}

// strictJSONDecoder is implemented by messages with a hand-written
// decoder; decodeJSON calls it instead of a json.Decoder (which would
// scan the payload twice before calling UnmarshalJSON).
type strictJSONDecoder interface {
	// decodeStrictJSON decodes data, one JSON object with optional
	// whitespace around it, as decodeJSON does.
	decodeStrictJSON(data []byte) error
}

// lineJSONSize bounds the length of a LogLine's JSON and the comma after
// it, besides its stream and text: `{"n":`, 20 digits, `,"time":"`, 35
// bytes of time, `","stream":""`, `,"text":""` and `},`.
const lineJSONSize = 5 + 20 + 9 + 35 + 13 + 10 + 2

// MarshalJSON returns l's JSON: the bytes encoding/json writes for a
// LogLine's fields, with <, > and & not escaped (encoding/json escapes
// them in what MarshalJSON returns when its HTML escaping is on, so
// json.Marshal's output is unchanged). It fails if l.Time cannot be
// written in RFC 3339 (a year outside 0..9999), as time.Time's does.
func (l LogLine) MarshalJSON() ([]byte, error) { return l.appendJSON(nil) }

func (l LogLine) appendJSON(dst []byte) ([]byte, error) {
	dst = slices.Grow(dst, lineJSONSize+len(l.Stream)+len(l.Text))
	return appendLogLine(dst, &l)
}

// UnmarshalJSON decodes one JSON object into l strictly, as Decode does:
// unknown fields are errors. Fields absent from data keep their values;
// null leaves l unchanged.
func (l *LogLine) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	return l.decodeStrictJSON(data)
}

func (l *LogLine) decodeStrictJSON(data []byte) error {
	return decodeTop(data, func(r *jsonReader) error { return r.logLine(l) })
}

// MarshalJSON returns m's JSON, as LogLine.MarshalJSON does.
func (m AppendLog) MarshalJSON() ([]byte, error) { return m.appendJSON(nil) }

func (m AppendLog) appendJSON(dst []byte) ([]byte, error) {
	dst = slices.Grow(dst, 64+len(m.Job.Repo)+len(m.Job.Job)+linesJSONSize(m.Lines))
	dst = append(dst, `{"job":`...)
	dst = appendJobRef(dst, &m.Job)
	dst = append(dst, `,"attempt":`...)
	dst = strconv.AppendInt(dst, int64(m.Attempt), 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, m.Seq, 10)
	dst = append(dst, `,"lines":`...)
	dst, err := appendLogLines(dst, m.Lines)
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// UnmarshalJSON decodes one JSON object into m strictly, as Decode does
// (but without Validate): unknown fields are errors. Fields absent from
// data keep their values; null leaves m unchanged.
func (m *AppendLog) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	return m.decodeStrictJSON(data)
}

func (m *AppendLog) decodeStrictJSON(data []byte) error {
	return decodeTop(data, func(r *jsonReader) error {
		return r.object("logging.append", func(key []byte) error {
			switch fieldIndex(key, appendLogFields) {
			case 0:
				return r.jobRef(&m.Job)
			case 1:
				return r.intValue("attempt", &m.Attempt)
			case 2:
				return r.int64Value("seq", &m.Seq)
			case 3:
				return r.lines(&m.Lines)
			}
			return r.unknownField(key)
		})
	})
}

// MarshalJSON returns m's JSON, as LogLine.MarshalJSON does.
func (m LogLines) MarshalJSON() ([]byte, error) { return m.appendJSON(nil) }

func (m LogLines) appendJSON(dst []byte) ([]byte, error) {
	dst = slices.Grow(dst, 64+len(m.Job.Repo)+len(m.Job.Job)+linesJSONSize(m.Lines))
	dst = append(dst, `{"job":`...)
	dst = appendJobRef(dst, &m.Job)
	dst = append(dst, `,"lines":`...)
	dst, err := appendLogLines(dst, m.Lines)
	if err != nil {
		return nil, err
	}
	dst = append(dst, `,"next":`...)
	dst = strconv.AppendInt(dst, m.Next, 10)
	if m.Closed {
		dst = append(dst, `,"closed":true`...)
	}
	return append(dst, '}'), nil
}

// UnmarshalJSON decodes one JSON object into m strictly, as Decode does
// (but without Validate): unknown fields are errors. Fields absent from
// data keep their values; null leaves m unchanged.
func (m *LogLines) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	return m.decodeStrictJSON(data)
}

func (m *LogLines) decodeStrictJSON(data []byte) error {
	return decodeTop(data, func(r *jsonReader) error {
		return r.object("logging.lines", func(key []byte) error {
			switch fieldIndex(key, logLinesFields) {
			case 0:
				return r.jobRef(&m.Job)
			case 1:
				return r.lines(&m.Lines)
			case 2:
				return r.int64Value("next", &m.Next)
			case 3:
				return r.boolValue("closed", &m.Closed)
			}
			return r.unknownField(key)
		})
	})
}

// decodeTop decodes data as one top-level JSON object with decode, then
// requires that nothing but white space follows.
func decodeTop(data []byte, decode func(r *jsonReader) error) error {
	r := jsonReader{data: data}
	r.space()
	if err := r.topObject(); err != nil {
		return err
	}
	if err := decode(&r); err != nil {
		return err
	}
	return r.end()
}

// Field names in declaration order, for fieldIndex.
var (
	lineFields      = []string{"n", "time", "stream", "text"}
	appendLogFields = []string{"job", "attempt", "seq", "lines"}
	logLinesFields  = []string{"job", "lines", "next", "closed"}
	jobRefFields    = []string{"repo", "build", "job"}
)

// fieldIndex returns the index of the field key names: the exact
// (lowercase) name first, then encoding/json's case folding; -1 if none.
func fieldIndex(key []byte, names []string) int {
	for i, name := range names {
		if string(key) == name {
			return i
		}
	}
	return foldedField(key, names...)
}

func foldedField(key []byte, names ...string) int {
	for i, name := range names {
		if foldedEqual(key, name) {
			return i
		}
	}
	return -1
}

// foldedEqual reports whether key names the field name (lowercase ASCII
// letters) when both are case-folded as encoding/json folds names, which
// is bytes.EqualFold's simple folding: ASCII letters in either case, plus
// the only two non-ASCII runes whose fold set holds an ASCII letter,
// U+017F (ſ, an s) and U+212A (the Kelvin sign, a k).
func foldedEqual(key []byte, name string) bool {
	j := 0
	for i := 0; i < len(key); j++ {
		if j == len(name) {
			return false
		}
		c := key[i]
		switch {
		case c < utf8.RuneSelf:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != name[j] {
				return false
			}
			i++
		case name[j] == 's' && i+1 < len(key) && c == 0xC5 && key[i+1] == 0xBF: // ſ
			i += 2
		case name[j] == 'k' && i+2 < len(key) && c == 0xE2 && key[i+1] == 0x84 && key[i+2] == 0xAA: // K
			i += 3
		default:
			return false
		}
	}
	return j == len(name)
}

// Encoding.

func linesJSONSize(lines []LogLine) int {
	n := 2
	for i := range lines {
		n += lineJSONSize + len(lines[i].Stream) + len(lines[i].Text)
	}
	return n
}

func appendJobRef(dst []byte, r *JobRef) []byte {
	dst = append(dst, `{"repo":`...)
	dst = appendJSONString(dst, r.Repo)
	dst = append(dst, `,"build":`...)
	dst = strconv.AppendInt(dst, r.Build, 10)
	dst = append(dst, `,"job":`...)
	dst = appendJSONString(dst, r.Job)
	return append(dst, '}')
}

func appendLogLines(dst []byte, lines []LogLine) ([]byte, error) {
	if lines == nil {
		return append(dst, "null"...), nil
	}
	dst = append(dst, '[')
	for i := range lines {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendLogLine(dst, &lines[i]); err != nil {
			return nil, fmt.Errorf("lines[%d]: %w", i, err)
		}
	}
	return append(dst, ']'), nil
}

func appendLogLine(dst []byte, l *LogLine) ([]byte, error) {
	dst = append(dst, `{"n":`...)
	dst = strconv.AppendInt(dst, l.N, 10)
	dst = append(dst, `,"time":"`...)
	withTime, err := l.Time.AppendText(dst)
	if err != nil {
		return nil, fmt.Errorf("contracts: encoding a log line's time: %w", err)
	}
	dst = append(withTime, `","stream":`...)
	dst = appendJSONString(dst, string(l.Stream))
	dst = append(dst, `,"text":`...)
	dst = appendJSONString(dst, l.Text)
	return append(dst, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes strings with HTML escaping off: \", \\, \b, \f, \n, \r and \t,
// other control characters as \u00XX, invalid UTF-8 bytes as \ufffd, and
// U+2028 and U+2029 as \u2028 and \u2029.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	i := plainPrefix(s)
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if isPlain(c) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			i += plainPrefix(s[i:])
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			start = i + size
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			start = i + size
		}
		i += size
		i += plainPrefix(s[i:])
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// isPlain reports whether c stands for itself in a JSON string as
// encoding/json writes it (with HTML escaping off) and as the scanner reads
// it without a second look: printable ASCII but for " and \.
func isPlain(c byte) bool { return c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' }

// plainPrefix returns how many of s's leading bytes are plain (isPlain),
// testing eight at a time.
func plainPrefix[T string | []byte](s T) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8] // one bounds check; the loads below combine into one
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		quote := x ^ (ones * '"')
		backslash := x ^ (ones * '\\')
		// A byte's high bit is set in control if the byte is below 0x20,
		// in quote or backslash if it is that character, in x if it is not
		// ASCII (the classic has-less and has-zero word tests; a false
		// alarm only sends the word to the byte loop).
		control := (x - ones*0x20) &^ x
		quote = (quote - ones) &^ quote
		backslash = (backslash - ones) &^ backslash
		if (control|quote|backslash|x)&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if !isPlain(s[i]) {
			return i
		}
	}
	return i
}

// Decoding.

// jsonReader reads one JSON value of the log messages from data.
type jsonReader struct {
	data  []byte
	pos   int
	keyAt int    // where the last object key read starts
	buf   []byte // unescaped strings, reused
}

// jsonError is the reader's error: where in the input, and what is wrong
// (syntax, an unknown field, a wrong JSON type, a number out of range).
type jsonError struct {
	Offset int
	Msg    string
}

func (e *jsonError) Error() string {
	return "contracts: JSON at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

func (r *jsonReader) fail(format string, args ...any) error {
	return &jsonError{Offset: r.pos, Msg: fmt.Sprintf(format, args...)}
}

// found describes what is at r.pos, for errors.
func (r *jsonReader) found() string {
	if r.pos >= len(r.data) {
		return "end of input"
	}
	switch c := r.data[r.pos]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || ('0' <= c && c <= '9'):
		return "a number"
	default:
		return strconv.QuoteRune(rune(c))
	}
}

func (r *jsonReader) typeError(field, want string) error {
	return r.fail("%s: want %s, got %s", field, want, r.found())
}

func (r *jsonReader) unknownField(key []byte) error {
	return &jsonError{Offset: r.keyAt, Msg: "unknown field " + strconv.Quote(string(key))}
}

func (r *jsonReader) space() {
	for r.pos < len(r.data) && isJSONSpace(r.data[r.pos]) {
		r.pos++
	}
}

// topObject checks that the top-level value is an object.
func (r *jsonReader) topObject() error {
	if r.pos >= len(r.data) || r.data[r.pos] != '{' {
		return r.fail("want a JSON object, got %s", r.found())
	}
	return nil
}

// end checks that only whitespace follows the value.
func (r *jsonReader) end() error {
	r.space()
	if r.pos != len(r.data) {
		return fmt.Errorf("%w (offset %d)", errTrailing, r.pos)
	}
	return nil
}

// null consumes a null literal if one is at r.pos.
func (r *jsonReader) null() bool {
	if len(r.data)-r.pos >= 4 && string(r.data[r.pos:r.pos+4]) == "null" {
		r.pos += 4
		return true
	}
	return false
}

// object reads an object at r.pos (what names it in errors): for each
// member it calls field with the key (unescaped, valid until the next
// read) and the reader at the value, which field must read.
func (r *jsonReader) object(what string, field func(key []byte) error) error {
	if r.pos >= len(r.data) || r.data[r.pos] != '{' {
		return r.typeError(what, "an object")
	}
	r.pos++
	r.space()
	if r.pos < len(r.data) && r.data[r.pos] == '}' {
		r.pos++
		return nil
	}
	for {
		if r.pos >= len(r.data) || r.data[r.pos] != '"' {
			return r.fail("want an object key, got %s", r.found())
		}
		r.keyAt = r.pos
		key, err := r.str()
		if err != nil {
			return err
		}
		r.space()
		if r.pos >= len(r.data) || r.data[r.pos] != ':' {
			return r.fail("want : after an object key, got %s", r.found())
		}
		r.pos++
		r.space()
		if err := field(key); err != nil {
			return err
		}
		r.space()
		if r.pos >= len(r.data) {
			return r.fail("want , or } in %s, got end of input", what)
		}
		switch r.data[r.pos] {
		case ',':
			r.pos++
			r.space()
		case '}':
			r.pos++
			return nil
		default:
			return r.fail("want , or } in %s, got %s", what, r.found())
		}
	}
}

// str reads the string at r.pos (an opening quote) and returns its
// unescaped value: a slice of the input if it needed no change, else of
// r.buf. It refuses what encoding/json's scanner refuses (control
// characters, bad escapes, no closing quote) and unescapes as
// encoding/json does.
func (r *jsonReader) str() ([]byte, error) {
	data := r.data
	start := r.pos + 1
	i := start + plainPrefix(data[start:])
	for i < len(data) {
		c := data[i]
		if c == '"' {
			r.pos = i + 1
			return data[start:i], nil
		}
		if c < utf8.RuneSelf {
			break // an escape or a control character
		}
		ch, size := utf8.DecodeRune(data[i:])
		if ch == utf8.RuneError && size == 1 {
			break
		}
		i += size
		i += plainPrefix(data[i:])
	}
	return r.unescape(start, i)
}

// unescape continues str at data[i], with data[start:i] plain.
func (r *jsonReader) unescape(start, i int) ([]byte, error) {
	data := r.data
	buf := append(r.buf[:0], data[start:i]...)
	for i < len(data) {
		switch c := data[i]; {
		case c == '"':
			r.pos = i + 1
			r.buf = buf
			return buf, nil
		case c == '\\':
			if i+1 >= len(data) {
				r.pos = i
				return nil, r.fail("unterminated string")
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				ch := hex4(data[i+2:])
				if ch < 0 {
					r.pos = i
					return nil, r.fail("invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(ch) {
					// A valid pair is one rune; anything else is U+FFFD for
					// the first half, and what follows is read on its own.
					next := rune(-1)
					if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
						next = hex4(data[i+2:])
					}
					if pair := utf16.DecodeRune(ch, next); pair != utf8.RuneError {
						ch = pair
						i += 6
					} else {
						ch = utf8.RuneError
					}
				}
				buf = utf8.AppendRune(buf, ch)
				continue
			default:
				r.pos = i
				return nil, r.fail("invalid escape %s in string", strconv.Quote(string(data[i:i+2])))
			}
			i += 2
		case c < 0x20:
			r.pos = i
			return nil, r.fail("control character %#02x in string", c)
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			ch, size := utf8.DecodeRune(data[i:])
			if ch == utf8.RuneError && size == 1 {
				buf = append(buf, "\uFFFD"...)
			} else {
				buf = append(buf, data[i:i+size]...)
			}
			i += size
		}
	}
	r.pos = len(data)
	r.buf = buf
	return nil, r.fail("unterminated string")
}

// hex4 returns the value of the four hex digits b starts with, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var v rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		v = v<<4 | rune(c)
	}
	return v
}

// integer reads a number that must be an integer within int64 (as
// strconv.ParseInt, which encoding/json uses, reads it).
func (r *jsonReader) integer(field string) (int64, error) {
	data := r.data
	i := r.pos
	neg := i < len(data) && data[i] == '-'
	if neg {
		i++
	}
	if i >= len(data) || data[i] < '0' || data[i] > '9' {
		if neg {
			r.pos = i
			return 0, r.fail("%s: want a digit after -, got %s", field, r.found())
		}
		return 0, r.typeError(field, "a number")
	}
	var u uint64
	if data[i] == '0' {
		i++
	} else {
		for digits := 0; i < len(data) && '0' <= data[i] && data[i] <= '9'; digits++ {
			if digits == 19 {
				return 0, r.fail("%s: number out of range", field)
			}
			u = u*10 + uint64(data[i]-'0')
			i++
		}
	}
	if i < len(data) {
		switch c := data[i]; {
		case c == '.' || c == 'e' || c == 'E' || ('0' <= c && c <= '9'):
			return 0, r.fail("%s: want an integer", field)
		}
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	if u > limit {
		return 0, r.fail("%s: number out of range", field)
	}
	r.pos = i
	if neg {
		return -int64(u), nil // -int64(1<<63) is math.MinInt64
	}
	return int64(u), nil
}

func (r *jsonReader) int64Value(field string, dst *int64) error {
	if r.null() {
		return nil
	}
	n, err := r.integer(field)
	if err != nil {
		return err
	}
	*dst = n
	return nil
}

func (r *jsonReader) intValue(field string, dst *int) error {
	if r.null() {
		return nil
	}
	n, err := r.integer(field)
	if err != nil {
		return err
	}
	if int64(int(n)) != n {
		return r.fail("%s: number out of range", field)
	}
	*dst = int(n)
	return nil
}

func (r *jsonReader) boolValue(field string, dst *bool) error {
	switch {
	case r.null():
	case len(r.data)-r.pos >= 4 && string(r.data[r.pos:r.pos+4]) == "true":
		r.pos += 4
		*dst = true
	case len(r.data)-r.pos >= 5 && string(r.data[r.pos:r.pos+5]) == "false":
		r.pos += 5
		*dst = false
	default:
		return r.typeError(field, "a boolean")
	}
	return nil
}

// stringAt reads a string value, or returns a type error.
func (r *jsonReader) stringAt(field string) ([]byte, error) {
	if r.pos >= len(r.data) || r.data[r.pos] != '"' {
		return nil, r.typeError(field, "a string")
	}
	return r.str()
}

func (r *jsonReader) stringValue(field string, dst *string) error {
	if r.null() {
		return nil
	}
	s, err := r.stringAt(field)
	if err != nil {
		return err
	}
	*dst = string(s)
	return nil
}

func (r *jsonReader) streamValue(dst *Stream) error {
	if r.null() {
		return nil
	}
	s, err := r.stringAt("stream")
	if err != nil {
		return err
	}
	switch string(s) {
	case string(StreamStdout):
		*dst = StreamStdout // no allocation for the usual values
	case string(StreamStderr):
		*dst = StreamStderr
	default:
		*dst = Stream(s)
	}
	return nil
}

// timeValue reads a time as encoding/json does, by time.Time's
// UnmarshalJSON: null leaves it, and the raw text between the quotes
// (escapes not undone) must be RFC 3339.
func (r *jsonReader) timeValue(dst *time.Time) error {
	if r.null() {
		return nil
	}
	at := r.pos
	if _, err := r.stringAt("time"); err != nil {
		return err
	}
	if err := dst.UnmarshalText(r.data[at+1 : r.pos-1]); err != nil {
		r.pos = at
		return r.fail("time: %v", err)
	}
	return nil
}

func (r *jsonReader) jobRef(dst *JobRef) error {
	if r.null() {
		return nil
	}
	return r.object("job", func(key []byte) error {
		switch fieldIndex(key, jobRefFields) {
		case 0:
			return r.stringValue("job.repo", &dst.Repo)
		case 1:
			return r.int64Value("job.build", &dst.Build)
		case 2:
			return r.stringValue("job.job", &dst.Job)
		}
		return r.unknownField(key)
	})
}

func (r *jsonReader) logLine(dst *LogLine) error {
	if r.null() {
		return nil
	}
	return r.object("line", func(key []byte) error {
		switch fieldIndex(key, lineFields) {
		case 0:
			return r.int64Value("n", &dst.N)
		case 1:
			return r.timeValue(&dst.Time)
		case 2:
			return r.streamValue(&dst.Stream)
		case 3:
			return r.stringValue("text", &dst.Text)
		}
		return r.unknownField(key)
	})
}

// minLineJSON is about the shortest valid LogLine's JSON; it bounds the
// capacity guessed for a slice of lines by the input left.
const minLineJSON = 64

// lines reads an array of lines into *dst as encoding/json does: null
// sets it to nil, [] to an empty slice, and otherwise element i is
// decoded into (*dst)[i] if the slice's capacity reaches it, keeping what
// that element held (so duplicate keys merge, as with encoding/json).
func (r *jsonReader) lines(dst *[]LogLine) error {
	if r.null() {
		*dst = nil
		return nil
	}
	if r.pos >= len(r.data) || r.data[r.pos] != '[' {
		return r.typeError("lines", "an array")
	}
	r.pos++
	first := r.pos
	r.space()
	if r.pos < len(r.data) && r.data[r.pos] == ']' {
		r.pos++
		*dst = []LogLine{}
		return nil
	}
	s := *dst
	i := 0
	for {
		if i == cap(s) {
			s = slices.Grow(s, r.linesToCome(first, i, cap(s)))
		}
		if i == len(s) {
			s = s[:i+1]
		}
		err := r.logLine(&s[i])
		i++
		if err != nil {
			*dst = s
			return err
		}
		r.space()
		if r.pos >= len(r.data) {
			*dst = s
			return r.fail("want , or ] in lines, got end of input")
		}
		c := r.data[r.pos]
		r.pos++
		if c == ']' {
			break
		}
		if c != ',' {
			r.pos--
			*dst = s
			return r.fail("want , or ] in lines, got %s", r.found())
		}
		r.space()
	}
	*dst = s[:i]
	return nil
}

// linesToCome guesses how many more lines the array begun at first holds,
// having read n of them into a slice of capacity c: from the input left
// and the average size of the lines read (minLineJSON at first). It
// grows the slice at least by a quarter and never allocates more lines
// than the input left could hold.
func (r *jsonReader) linesToCome(first, n, c int) int {
	left := len(r.data) - r.pos
	per := minLineJSON
	if n > 0 {
		per = max(per, (r.pos-first)/n)
	}
	guess := left/per + 1
	if n == 0 {
		guess = min(guess, 8) // learn the lines' size before guessing big
	}
	return max(guess, c/4, 1)
}
