package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// The hand-written codec of logline_json.go is checked against
// encoding/json run on twins of its types: the same fields and tags, no
// methods. decodeJSON and encodeJSON take encoding/json's path for the
// twins, which is how the log messages were decoded and encoded before.

type plainLine struct {
	N      int64     `json:"n"`
	Time   time.Time `json:"time"`
	Stream Stream    `json:"stream"`
	Text   string    `json:"text"`
}

type plainAppend struct {
	Job     JobRef      `json:"job"`
	Attempt int         `json:"attempt"`
	Seq     int64       `json:"seq"`
	Lines   []plainLine `json:"lines"`
}

type plainLines struct {
	Job    JobRef      `json:"job"`
	Lines  []plainLine `json:"lines"`
	Next   int64       `json:"next"`
	Closed bool        `json:"closed,omitempty"`
}

func fromPlain(ls []plainLine) []LogLine {
	if ls == nil {
		return nil
	}
	out := make([]LogLine, len(ls))
	for i, l := range ls {
		out[i] = LogLine(l)
	}
	return out
}

func toPlain(ls []LogLine) []plainLine {
	if ls == nil {
		return nil
	}
	out := make([]plainLine, len(ls))
	for i, l := range ls {
		out[i] = plainLine(l)
	}
	return out
}

// codecKind is one of the three hand-coded types.
type codecKind int

const (
	kindLine codecKind = iota
	kindAppend
	kindLines
	numKinds
)

func (k codecKind) String() string { return [...]string{"LogLine", "AppendLog", "LogLines"}[k] }

// targets returns a fresh hand-coded target of kind k and its plain twin,
// both zero or both holding the same used value: lines whose slice has
// capacity beyond its length, so that reuse of the backing array shows.
func targets(k codecKind, used bool) (hand, plain any) {
	var lines []LogLine
	if used {
		backing := []LogLine{
			{N: 1, Time: t0, Stream: StreamStdout, Text: "one"},
			{N: 2, Time: t1, Stream: StreamStderr, Text: "two"},
			{N: 3, Text: "three"},
		}
		lines = backing[:1]
	}
	plainBacking := toPlain(lines[:cap(lines)])
	plainSlice := plainBacking[:len(lines)]
	if lines == nil {
		plainSlice = nil
	}
	job := JobRef{}
	if used {
		job = JobRef{Repo: "old", Build: 3, Job: "old-job"}
	}
	switch k {
	case kindLine:
		if used {
			return &LogLine{N: 9, Time: t1, Stream: "odd", Text: "old"}, &plainLine{N: 9, Time: t1, Stream: "odd", Text: "old"}
		}
		return &LogLine{}, &plainLine{}
	case kindAppend:
		return &AppendLog{Job: job, Attempt: len(lines) * 4, Seq: int64(len(lines)) * 5, Lines: lines},
			&plainAppend{Job: job, Attempt: len(lines) * 4, Seq: int64(len(lines)) * 5, Lines: plainSlice}
	default:
		return &LogLines{Job: job, Lines: lines, Next: int64(len(lines)) * 6, Closed: used},
			&plainLines{Job: job, Lines: plainSlice, Next: int64(len(lines)) * 6, Closed: used}
	}
}

// asHand converts a decoded twin to the hand-coded type, as a value.
func asHand(v any) any {
	switch v := v.(type) {
	case *plainLine:
		return LogLine(*v)
	case *plainAppend:
		return AppendLog{Job: v.Job, Attempt: v.Attempt, Seq: v.Seq, Lines: fromPlain(v.Lines)}
	case *plainLines:
		return LogLines{Job: v.Job, Lines: fromPlain(v.Lines), Next: v.Next, Closed: v.Closed}
	case *LogLine:
		return *v
	case *AppendLog:
		return *v
	case *LogLines:
		return *v
	}
	panic(fmt.Sprintf("asHand(%T)", v))
}

// asPlain converts a hand-coded value to its twin.
func asPlain(v any) any {
	switch v := v.(type) {
	case LogLine:
		return plainLine(v)
	case AppendLog:
		return plainAppend{Job: v.Job, Attempt: v.Attempt, Seq: v.Seq, Lines: toPlain(v.Lines)}
	case LogLines:
		return plainLines{Job: v.Job, Lines: toPlain(v.Lines), Next: v.Next, Closed: v.Closed}
	}
	panic(fmt.Sprintf("asPlain(%T)", v))
}

// checkDecode decodes in as a k both ways, from a zero or a used value,
// and fails t unless both accept with the same value or both refuse. It
// returns the decoded value (nil if refused).
func checkDecode(t *testing.T, k codecKind, in []byte, used bool) any {
	t.Helper()
	hand, plain := targets(k, used)
	herr := decodeJSON(in, hand)
	perr := decodeJSON(in, plain)
	if (herr == nil) != (perr == nil) {
		t.Fatalf("%v (used %v) %q:\nhand-coded: %v\nencoding/json: %v", k, used, in, herr, perr)
	}
	if herr != nil {
		return nil
	}
	got, want := asHand(hand), asHand(plain)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%v (used %v) %q decodes differently\nhand-coded:    %#v\nencoding/json: %#v", k, used, in, got, want)
	}
	return got
}

// checkNested decodes in as a k inside an object, where encoding/json
// calls the type's UnmarshalJSON with exactly the value's bytes (null
// included), against the twin inside the same object.
func checkNested(t *testing.T, k codecKind, in []byte) {
	t.Helper()
	wrapped := append(append([]byte(`{"x":`), in...), '}')
	var herr, perr error
	var got, want any
	switch k {
	case kindLine:
		var h struct{ X []LogLine }
		var p struct{ X []plainLine }
		wrapped = append(append([]byte(`{"x":[`), in...), ']', '}')
		herr, perr = strictUnmarshal(wrapped, &h), strictUnmarshal(wrapped, &p)
		got, want = h.X, fromPlain(p.X)
	case kindAppend:
		var h struct{ X AppendLog }
		var p struct{ X plainAppend }
		herr, perr = strictUnmarshal(wrapped, &h), strictUnmarshal(wrapped, &p)
		got, want = h.X, asHand(&p.X)
	default:
		var h struct{ X LogLines }
		var p struct{ X plainLines }
		herr, perr = strictUnmarshal(wrapped, &h), strictUnmarshal(wrapped, &p)
		got, want = h.X, asHand(&p.X)
	}
	if (herr == nil) != (perr == nil) {
		t.Fatalf("%v nested %q:\nhand-coded: %v\nencoding/json: %v", k, wrapped, herr, perr)
	}
	if herr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%v nested %q decodes differently\nhand-coded:    %#v\nencoding/json: %#v", k, wrapped, got, want)
	}
}

func strictUnmarshal(in []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkEncode encodes v (a hand-coded value) both ways and fails t unless
// the bytes are the same (or both fail), with and without HTML escaping.
// It returns encodeJSON's result.
func checkEncode(t *testing.T, v any) ([]byte, error) {
	t.Helper()
	enc, err := encodeJSON(v)
	want, perr := encodeJSON(asPlain(v))
	if (err == nil) != (perr == nil) || !bytes.Equal(enc, want) {
		t.Fatalf("encoding %#v\nhand-coded:    %s (%v)\nencoding/json: %s (%v)", v, enc, err, want, perr)
	}
	got, herr := json.Marshal(v)
	want, perr = json.Marshal(asPlain(v))
	if (herr == nil) != (perr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("json.Marshal %#v\nhand-coded:    %s (%v)\nencoding/json: %s (%v)", v, got, herr, want, perr)
	}
	return enc, err
}

// checkAll runs every check on in, for every kind.
func checkAll(t *testing.T, in []byte) {
	t.Helper()
	for k := range numKinds {
		for _, used := range []bool{false, true} {
			if v := checkDecode(t, k, in, used); v != nil {
				enc, err := checkEncode(t, v)
				if err != nil {
					continue // a time that decodes but does not encode, both ways
				}
				again := checkDecode(t, k, enc, false)
				if again == nil {
					t.Fatalf("%v: re-encoding %s does not decode", k, enc)
				}
				if !reflect.DeepEqual(normal(again), normal(v)) {
					t.Fatalf("%v: decode → encode → decode changed the value\n got: %#v\nwant: %#v", k, again, v)
				}
			}
		}
		checkNested(t, k, in)
	}
}

const (
	okLine  = `{"n":1,"time":"2025-03-14T15:09:26.535897932Z","stream":"stdout","text":"hello"}`
	okJob   = `{"repo":"web","build":7,"job":"test"}`
	okChunk = `{"job":` + okJob + `,"attempt":1,"seq":3,"lines":[` + okLine + `]}`
)

// codecCases are inputs at the edges of what encoding/json accepts; each
// is decoded as all three types (the same JSON is usually right for one
// and wrong for the others, which is checked too).
var codecCases = []struct {
	name string
	in   string
	kind codecKind // the kind the input is meant for
	ok   bool      // whether that kind accepts it
}{
	{"line", okLine, kindLine, true},
	{"chunk", okChunk, kindAppend, true},
	{"lines reply", `{"job":` + okJob + `,"lines":[` + okLine + `,` + okLine + `],"next":2,"closed":true}`, kindLines, true},
	{"empty object", `{}`, kindLine, true},
	{"whitespace", " \t\r\n{ \"n\" :\t1 , \"text\"\n:\r\"x\" }\n ", kindLine, true},
	{"null fields", `{"n":null,"time":null,"stream":null,"text":null}`, kindLine, true},
	{"null job and lines", `{"job":null,"attempt":null,"seq":null,"lines":null}`, kindAppend, true},
	{"null line", `{"lines":[null,` + okLine + `,null]}`, kindAppend, true},
	{"null closed", `{"closed":null}`, kindLines, true},
	{"empty lines", `{"lines":[]}`, kindAppend, true},
	{"empty lines spaced", `{"lines":[ ]}`, kindAppend, true},
	{"duplicate keys", `{"n":1,"n":2,"text":"a","text":"b"}`, kindLine, true},
	{"duplicate then null", `{"n":1,"n":null,"time":"2025-01-01T00:00:00Z","time":null}`, kindLine, true},
	{"duplicate job merges", `{"job":{"repo":"a","build":1},"job":{"job":"j"}}`, kindAppend, true},
	{"duplicate lines reuse", `{"lines":[{"n":1,"text":"a"},{"n":2,"text":"b"}],"lines":[{"n":3}]}`, kindAppend, true},
	{"duplicate lines stale", `{"lines":[{"text":"a"},{"text":"b"},{"text":"c"}],"lines":[{"n":1}],"lines":[{"n":4},{"n":5},{"n":6},{"n":7}]}`, kindAppend, true},
	{"lines then empty", `{"lines":[{"text":"a"}],"lines":[],"lines":[{"n":2}]}`, kindAppend, true},
	{"lines then null", `{"lines":[{"text":"a"}],"lines":null}`, kindAppend, true},
	{"upper case keys", `{"N":1,"TIME":"2025-01-01T00:00:00Z","Stream":"stdout","tExT":"x"}`, kindLine, true},
	{"long s key", `{"ſtream":"stdout","ſeq":1}`, kindLine, false},
	{"long s key line", `{"ſtream":"stdout","teXt":"a"}`, kindLine, true},
	{"long s key append", `{"ſeq":1,"lineſ":[]}`, kindAppend, true},
	{"escaped key", `{"\u006e":1,"te\u0078t":"x","\u017ftream":"stderr"}`, kindLine, true},
	{"dotless i key", `{"tıme":"2025-01-01T00:00:00Z"}`, kindLine, false},
	{"dotted I key", `{"tİme":"2025-01-01T00:00:00Z"}`, kindLine, false},
	{"kelvin key", `{"\u212aey":1}`, kindLine, false},
	{"unknown field", `{"n":1,"extra":2}`, kindLine, false},
	{"unknown null field", `{"extra":null}`, kindLine, false},
	{"unknown nested field", `{"job":{"repo":"a","owner":"b"}}`, kindAppend, false},
	{"unknown line field", `{"lines":[{"n":1,"color":"red"}]}`, kindAppend, false},
	{"key prefix", `{"tex":"a"}`, kindLine, false},
	{"key longer", `{"texts":"a"}`, kindLine, false},
	{"empty key", `{"":1}`, kindLine, false},
	{"minus zero", `{"n":-0}`, kindLine, true},
	{"max int64", `{"n":9223372036854775807}`, kindLine, true},
	{"min int64", `{"n":-9223372036854775808}`, kindLine, true},
	{"over int64", `{"n":9223372036854775808}`, kindLine, false},
	{"under int64", `{"n":-9223372036854775809}`, kindLine, false},
	{"twenty digits", `{"n":10000000000000000000}`, kindLine, false},
	{"max attempt", `{"attempt":9223372036854775807}`, kindAppend, true},
	{"fraction", `{"n":1.0}`, kindLine, false},
	{"exponent", `{"n":1e2}`, kindLine, false},
	{"exponent upper", `{"n":1E2}`, kindLine, false},
	{"leading zero", `{"n":01}`, kindLine, false},
	{"plus", `{"n":+1}`, kindLine, false},
	{"lone minus", `{"n":-}`, kindLine, false},
	{"number as string", `{"n":"1"}`, kindLine, false},
	{"string as number", `{"text":1}`, kindLine, false},
	{"bool as number", `{"n":true}`, kindLine, false},
	{"closed true", `{"closed":true}`, kindLines, true},
	{"closed false", `{"closed":false}`, kindLines, true},
	{"closed as number", `{"closed":1}`, kindLines, false},
	{"closed truncated", `{"closed":tru}`, kindLines, false},
	{"lines as object", `{"lines":{}}`, kindAppend, false},
	{"line as array", `{"lines":[[]]}`, kindAppend, false},
	{"line as number", `{"lines":[1]}`, kindAppend, false},
	{"job as string", `{"job":"web"}`, kindAppend, false},
	{"trailing comma in object", `{"n":1,}`, kindLine, false},
	{"trailing comma in array", `{"lines":[{},]}`, kindAppend, false},
	{"missing comma", `{"n":1 "text":"a"}`, kindLine, false},
	{"missing colon", `{"n" 1}`, kindLine, false},
	{"single quotes", `{'n':1}`, kindLine, false},
	{"unclosed", `{"n":1`, kindLine, false},
	{"unclosed string", `{"text":"abc`, kindLine, false},
	{"unclosed array", `{"lines":[{}`, kindAppend, false},
	{"trailing object", `{}{}`, kindLine, false},
	{"trailing garbage", `{} x`, kindLine, false},
	{"trailing NUL", "{}\x00", kindLine, false},
	{"null top", `null`, kindLine, false},
	{"array top", `[]`, kindLine, false},
	{"empty input", ``, kindLine, false},
	{"BOM", "\uFEFF{}", kindLine, false},
	{"escapes", `{"text":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac"}`, kindLine, true},
	{"upper hex escape", `{"text":"\u00E9\uABCD"}`, kindLine, true},
	{"surrogate pair", `{"text":"\ud83d\ude00"}`, kindLine, true},
	{"lone high surrogate", `{"text":"a\ud83db"}`, kindLine, true},
	{"lone low surrogate", `{"text":"\ude00"}`, kindLine, true},
	{"reversed pair", `{"text":"\ude00\ud83d"}`, kindLine, true},
	{"high then letter escape", `{"text":"\ud83d\u0041"}`, kindLine, true},
	{"two highs", `{"text":"\ud83d\ud83d\ude00"}`, kindLine, true},
	{"high at end", `{"text":"\ud83d"}`, kindLine, true},
	{"high then bad escape", `{"text":"\ud83d\uZZZZ"}`, kindLine, false},
	{"short u escape", `{"text":"\u12"}`, kindLine, false},
	{"bad escape", `{"text":"\x"}`, kindLine, false},
	{"single quote escape", `{"text":"\'"}`, kindLine, false},
	{"raw newline", "{\"text\":\"a\nb\"}", kindLine, false},
	{"raw tab", "{\"text\":\"a\tb\"}", kindLine, false},
	{"raw DEL", "{\"text\":\"a\x7fb\"}", kindLine, true},
	{"invalid UTF-8", "{\"text\":\"a\xffb\xc3\"}", kindLine, true},
	{"invalid UTF-8 escaped too", "{\"text\":\"\\n\xff\xfe\xed\xa0\x80\"}", kindLine, true},
	{"invalid UTF-8 in key", "{\"te\xffxt\":\"a\"}", kindLine, false},
	{"invalid UTF-8 outside strings", "{\xff}", kindLine, false},
	{"surrogate as UTF-8", "{\"text\":\"\xed\xa0\xbd\xed\xb8\x80\"}", kindLine, true},
	{"line separators", "{\"text\":\"a\u2028b\u2029c\"}", kindLine, true},
	{"ANSI and CR", "{\"text\":\"\\u001b[31mred\\u001b[0m\\r\"}", kindLine, true},
	{"stream interned", `{"stream":"stderr"}`, kindLine, true},
	{"stream other", `{"stream":"stdin"}`, kindLine, true},
	{"time offset", `{"time":"2025-03-14T15:09:26+01:00"}`, kindLine, true},
	{"time minus zero", `{"time":"2025-03-14T15:09:26-00:00"}`, kindLine, true},
	{"time lower case", `{"time":"2025-03-14t15:09:26z"}`, kindLine, false},
	{"time no zone", `{"time":"2025-03-14T15:09:26"}`, kindLine, false},
	{"time one-digit hour", `{"time":"2025-03-14T5:09:26Z"}`, kindLine, true}, // time.Time's strict checks are off (go.dev/issue/54580)
	{"time comma fraction", `{"time":"2025-03-14T15:09:26,5Z"}`, kindLine, true},
	{"time empty fraction", `{"time":"2025-03-14T15:09:26.Z"}`, kindLine, false},
	{"time zone hour 24", `{"time":"2025-03-14T15:09:26+24:00"}`, kindLine, true}, // decodes, but does not encode
	{"time escaped", `{"time":"2025-03-14T15:09:26\u005a"}`, kindLine, false},
	{"time as number", `{"time":1}`, kindLine, false},
	{"time as object", `{"time":{}}`, kindLine, false},
	{"time empty", `{"time":""}`, kindLine, false},
	{"time year 0", `{"time":"0000-01-01T00:00:00Z"}`, kindLine, true},
	{"time leap second", `{"time":"2016-12-31T23:59:60Z"}`, kindLine, false},
	{"deep unknown", `{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, kindLine, false},
	{"deep known", `{"lines":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, kindAppend, false},
}

func TestLogJSONCases(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			hand, _ := targets(tc.kind, false)
			err := decodeJSON([]byte(tc.in), hand)
			if (err == nil) != tc.ok {
				t.Fatalf("%v: decodeJSON(%q) = %v, want ok %v", tc.kind, tc.in, err, tc.ok)
			}
			checkAll(t, []byte(tc.in))
		})
	}
}

// TestLogJSONValues pins decoded values where encoding/json's behaviour
// is easy to get wrong, so that a change in encoding/json shows here too.
func TestLogJSONValues(t *testing.T) {
	var l LogLine
	if err := decodeJSON([]byte(`{"text":"\ud83d\u0041\ude00\ud83d\ude00","STREAM":"stderr","ſtream":"stdout"}`), &l); err != nil {
		t.Fatal(err)
	}
	if want := "\uFFFDA\uFFFD\U0001F600"; l.Text != want || l.Stream != StreamStdout {
		t.Fatalf("decoded %+v, want text %q from stdout", l, want)
	}

	var m AppendLog
	in := `{"lines":[{"text":"a"},{"text":"b"},{"text":"c"}],"lines":[{"n":1}],"lines":[{"n":4},{"n":5},{"n":6},{"n":7}],"job":{"repo":"r"},"job":null,"job":{"build":2}}`
	if err := decodeJSON([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	want := AppendLog{Job: JobRef{Repo: "r", Build: 2}, Lines: []LogLine{{N: 4, Text: "a"}, {N: 5, Text: "b"}, {N: 6, Text: "c"}, {N: 7}}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded %+v\nwant %+v", m, want)
	}

	var r LogLines
	if err := decodeJSON([]byte(`{"lines":[{"n":1}],"lines":[],"next":3,"closed":true,"closed":null}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.Lines == nil || len(r.Lines) != 0 || cap(r.Lines) != 0 || r.Next != 3 || !r.Closed {
		t.Fatalf("decoded %+v (cap %d)", r, cap(r.Lines))
	}

	enc, err := encodeJSON(LogLines{Job: ref(), Next: 1})
	if err != nil || string(enc) != `{"job":{"repo":"web","build":7,"job":"test"},"lines":null,"next":1}` {
		t.Fatalf("nil lines encode as %s (%v)", enc, err)
	}
	enc, err = encodeJSON(LogLine{N: 1, Time: t0, Stream: StreamStdout, Text: "<&>\u2028\x1b\xff\x7f\"\\"})
	if want := `{"n":1,"time":"2025-03-14T15:09:26.535897932Z","stream":"stdout","text":"<&>\u2028\u001b\ufffd` + "\x7f" + `\"\\"}`; err != nil || string(enc) != want {
		t.Fatalf("encoded %s (%v), want %s", enc, err, want)
	}
}

func TestLogJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"year 10000", LogLine{N: 1, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"year -1", AppendLog{Lines: []LogLine{{}, {Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}}},
		{"zone hour 24", LogLines{Lines: []LogLine{{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := encodeJSON(tc.v)
			if err == nil || got != nil {
				t.Fatalf("encodeJSON = %s, %v; want an error", got, err)
			}
			if _, err := json.Marshal(tc.v); err == nil {
				t.Fatal("json.Marshal: no error")
			}
			if _, err := encodeJSON(asPlain(tc.v)); err == nil {
				t.Fatal("encoding/json accepts what the hand-coded encoder refuses")
			}
		})
	}

	// Errors say where and what, and never panic on cut-off input.
	in := []byte(okChunk)
	for n := range len(in) {
		var m AppendLog
		err := m.UnmarshalJSON(in[:n])
		if err == nil {
			t.Fatalf("%q decodes", in[:n])
		}
		if !strings.HasPrefix(err.Error(), "contracts: JSON at offset") {
			t.Fatalf("%q: error %q does not say where", in[:n], err)
		}
	}
	var l LogLine
	err := l.UnmarshalJSON([]byte(`{"n":1,"colour":"red"}`))
	if err == nil || err.Error() != `contracts: JSON at offset 7: unknown field "colour"` {
		t.Fatalf("unknown field: %v", err)
	}
	if err := l.UnmarshalJSON([]byte(`null`)); err != nil || l.N != 1 {
		t.Fatalf("UnmarshalJSON(null) = %v, left %+v", err, l)
	}
}

// TestLogJSONKeyFolding checks foldedEqual against bytes.EqualFold for
// every rune and every ASCII letter, and against encoding/json for every
// rune that folds to a letter and a sample of others.
func TestLogJSONKeyFolding(t *testing.T) {
	var runes []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		key := []byte(string(r))
		folds := false
		for c := byte('a'); c <= 'z'; c++ {
			want := bytes.EqualFold(key, []byte{c})
			if foldedEqual(key, string(c)) != want {
				t.Fatalf("foldedEqual(%q, %q) = %v", r, c, !want)
			}
			folds = folds || want
		}
		if (folds && r >= utf8.RuneSelf) || r < 0x300 || r%9973 == 0 {
			runes = append(runes, r)
		}
	}
	for _, r := range append(runes, 0x130, 0x131, 0x1E9E, 0xFFFD) {
		for _, name := range []string{"seq", "text", "closed", "build"} {
			for i := range name {
				key := name[:i] + string(r) + name[i+1:]
				in, _ := json.Marshal(key)
				for _, k := range []codecKind{kindLine, kindAppend, kindLines} {
					checkDecode(t, k, fmt.Appendf(nil, `{%s:null}`, in), false)
				}
				checkDecode(t, kindAppend, fmt.Appendf(nil, `{"job":{%s:null}}`, in), false)
			}
		}
	}
}

// TestLogJSONRoundTrip encodes random lines (any Unicode, control
// characters, ANSI escapes, invalid UTF-8, long lines, times in several
// zones) both ways, and decodes the result both ways.
func TestLogJSONRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x10c))
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 3600), time.FixedZone("X", -(9*3600 + 30*60)), time.FixedZone("", 45)}
	randText := func() string {
		var b strings.Builder
		n := rng.IntN(120)
		if rng.IntN(20) == 0 {
			n = rng.IntN(MaxLogLineLen + 1)
		}
		for b.Len() < n {
			switch rng.IntN(10) {
			case 0:
				b.WriteString("\x1b[" + fmt.Sprint(rng.IntN(108)) + "m")
			case 1:
				b.WriteByte(byte(rng.IntN(0x20)))
			case 2:
				b.WriteByte(byte(rng.IntN(256))) // often invalid UTF-8
			case 3:
				b.WriteRune(rune(rng.IntN(unicode.MaxRune + 1)))
			case 4:
				b.WriteString([]string{"\u2028", "\u2029", "\"", "\\", "<&>", "\x7f", "\r"}[rng.IntN(7)])
			default:
				b.WriteString("plain ascii text ")
			}
		}
		return b.String()
	}
	randLine := func() LogLine {
		var tm time.Time
		switch rng.IntN(20) {
		case 0: // zero
		case 1:
			tm = time.Date(10000+rng.IntN(10), 1, 1, 0, 0, 0, 0, time.UTC) // does not encode
		default:
			tm = time.Unix(rng.Int64N(253402300799), rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))])
			if rng.IntN(3) == 0 {
				tm = tm.Truncate(time.Second)
			}
		}
		return LogLine{N: rng.Int64() - rng.Int64(), Time: tm, Stream: []Stream{StreamStdout, StreamStderr, "", "stdin"}[rng.IntN(4)], Text: randText()}
	}
	randLines := func() []LogLine {
		switch rng.IntN(10) {
		case 0:
			return nil
		case 1:
			return []LogLine{}
		}
		lines := make([]LogLine, 1+rng.IntN(30))
		for i := range lines {
			lines[i] = randLine()
		}
		return lines
	}
	job := func() JobRef { return JobRef{Repo: randText(), Build: rng.Int64(), Job: randText()} }

	for range 300 {
		for _, v := range []any{
			randLine(),
			AppendLog{Job: job(), Attempt: rng.Int(), Seq: rng.Int64(), Lines: randLines()},
			LogLines{Job: job(), Lines: randLines(), Next: rng.Int64(), Closed: rng.IntN(2) == 0},
		} {
			enc, err := checkEncode(t, v)
			if err != nil {
				continue
			}
			k := map[string]codecKind{"LogLine": kindLine, "AppendLog": kindAppend, "LogLines": kindLines}[reflect.TypeOf(v).Name()]
			got := checkDecode(t, k, enc, false)
			if got == nil {
				t.Fatalf("%s does not decode", enc)
			}
			if !reflect.DeepEqual(normal(got), normal(v)) {
				t.Fatalf("round trip changed the value\n got: %#v\nwant: %#v", got, v)
			}
		}
	}
}

// normal returns v (a hand-coded value) as a round trip through JSON
// leaves it: each invalid UTF-8 byte of its strings U+FFFD, its times in
// UTC (JSON keeps the instant, not the location) and moved by the seconds
// of a zone offset that RFC 3339 cannot write.
func normal(v any) any {
	str := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteRune(utf8.RuneError)
			} else {
				b.WriteString(s[i : i+size])
			}
			i += size
		}
		return b.String()
	}
	line := func(l LogLine) LogLine {
		_, off := l.Time.Zone()
		return LogLine{N: l.N, Time: l.Time.Add(time.Duration(off%60) * time.Second).UTC(), Stream: Stream(str(string(l.Stream))), Text: str(l.Text)}
	}
	lines := func(ls []LogLine) []LogLine {
		if ls == nil {
			return nil
		}
		out := make([]LogLine, len(ls))
		for i, l := range ls {
			out[i] = line(l)
		}
		return out
	}
	job := func(j JobRef) JobRef { return JobRef{Repo: str(j.Repo), Build: j.Build, Job: str(j.Job)} }
	switch v := v.(type) {
	case LogLine:
		return line(v)
	case AppendLog:
		return AppendLog{Job: job(v.Job), Attempt: v.Attempt, Seq: v.Seq, Lines: lines(v.Lines)}
	case LogLines:
		return LogLines{Job: job(v.Job), Lines: lines(v.Lines), Next: v.Next, Closed: v.Closed}
	}
	panic(fmt.Sprintf("normal(%T)", v))
}

func TestPlainPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 64)
	for range 20000 {
		for i := range buf {
			buf[i] = byte(' ' + rng.IntN(95)) // plain, mostly
			if rng.IntN(40) == 0 {
				buf[i] = byte(rng.IntN(256))
			}
		}
		s := buf[rng.IntN(8):]
		want := 0
		for want < len(s) && isPlain(s[want]) {
			want++
		}
		if got := plainPrefix(s); got != want {
			t.Fatalf("plainPrefix(%q) = %d, want %d", s, got, want)
		}
		if got := plainPrefix(string(s)); got != want {
			t.Fatalf("plainPrefix(string %q) = %d, want %d", s, got, want)
		}
	}
}

// TestLogJSONAllocations: a chunk of lines decodes with one allocation per
// line (its text) and a few more, and encodes with one or two.
func TestLogJSONAllocations(t *testing.T) {
	var m Message = benchChunk(MaxLogChunkLines) // as encodePayload has it
	enc, err := encodeJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	// One allocation, the buffer; builds with -race show a second.
	if n := testing.AllocsPerRun(5, func() { _, _ = encodeJSON(m) }); n > 2 {
		t.Errorf("encoding %d lines: %v allocations", MaxLogChunkLines, n)
	}
	n := testing.AllocsPerRun(5, func() {
		var got AppendLog
		if err := decodeJSON(enc, &got); err != nil {
			t.Fatal(err)
		}
	})
	if n > MaxLogChunkLines+8 {
		t.Errorf("decoding %d lines: %v allocations", MaxLogChunkLines, n)
	}
}

func benchChunk(n int) AppendLog {
	lines := make([]LogLine, n)
	now := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	for i := range lines {
		lines[i] = LogLine{N: int64(i + 1), Time: now.Add(time.Duration(i) * time.Microsecond), Stream: StreamStdout, Text: strings.Repeat("0123456789abcdefghij", 4)}
	}
	return AppendLog{Job: ref(), Attempt: 1, Seq: 1, Lines: lines}
}

// FuzzLogLineJSON decodes arbitrary input as each of LogLine, AppendLog
// and LogLines, from a zero and from a used value, with the hand-written
// codec and with encoding/json: both must accept it or both refuse it,
// decode it to the same value, and encode that value to the same bytes.
func FuzzLogLineJSON(f *testing.F) {
	for _, tc := range codecCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAll(t, in)
	})
}

// BenchmarkLogJSON: a chunk of 1000 lines of 80 bytes encoded and decoded
// by the hand-written codec and by encoding/json (the twins, as before).
func BenchmarkLogJSON(b *testing.B) {
	m := benchChunk(MaxLogChunkLines)
	p := asPlain(m).(plainAppend)
	enc, err := encodeJSON(m)
	if err != nil {
		b.Fatal(err)
	}
	run := func(name string, f func() error) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(m.Lines)), "ns/line")
		})
	}
	run("encode/hand", func() error { _, err := encodeJSON(m); return err })
	run("encode/encoding-json", func() error { _, err := encodeJSON(p); return err })
	run("decode/hand", func() error { var v AppendLog; return decodeJSON(enc, &v) })
	run("decode/encoding-json", func() error { var v plainAppend; return decodeJSON(enc, &v) })
	run("both/hand", func() error {
		e, err := encodeJSON(m)
		if err != nil {
			return err
		}
		var v AppendLog
		return decodeJSON(e, &v)
	})
	run("both/encoding-json", func() error {
		e, err := encodeJSON(p)
		if err != nil {
			return err
		}
		var v plainAppend
		return decodeJSON(e, &v)
	})
}
