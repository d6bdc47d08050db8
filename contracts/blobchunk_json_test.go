package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The hand-written codec of blobchunk_json.go is checked against
// encoding/json run on twins of its types: the same fields and tags, no
// methods. decodeJSON and encodeJSON take encoding/json's path for the
// twins, which is how the blob chunk messages were decoded and encoded
// before.

type plainPutChunk struct {
	UploadID ID     `json:"upload_id"`
	Offset   int64  `json:"offset"`
	Data     []byte `json:"data"`
	SHA256   string `json:"sha256"`
}

type plainBlobChunk struct {
	Key        string `json:"key"`
	Offset     int64  `json:"offset"`
	Data       []byte `json:"data"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	BlobSHA256 string `json:"blob_sha256"`
	EOF        bool   `json:"eof"`
}

// blobKind is one of the two hand-coded types.
type blobKind int

const (
	kindPut blobKind = iota
	kindGet
	numBlobKinds
)

func (k blobKind) String() string { return [...]string{"PutChunk", "BlobChunk"}[k] }

// blobTargets returns a fresh hand-coded target of kind k and its plain
// twin, both zero or both holding the same used value: Data with capacity
// beyond its length (separate backing arrays with the same bytes), so that
// reuse of the backing array by a JSON array shows.
func blobTargets(k blobKind, used bool) (hand, plain any) {
	if !used {
		if k == kindPut {
			return &PutChunk{}, &plainPutChunk{}
		}
		return &BlobChunk{}, &plainBlobChunk{}
	}
	backing := func() []byte { return []byte{0xa1, 0xa2, 0xa3, 0xa4, 0xa5}[:2] }
	if k == kindPut {
		return &PutChunk{UploadID: testID(9), Offset: 11, Data: backing(), SHA256: "old"},
			&plainPutChunk{UploadID: testID(9), Offset: 11, Data: backing(), SHA256: "old"}
	}
	return &BlobChunk{Key: "old", Offset: 11, Data: backing(), SHA256: "old", Size: 12, BlobSHA256: "older", EOF: true},
		&plainBlobChunk{Key: "old", Offset: 11, Data: backing(), SHA256: "old", Size: 12, BlobSHA256: "older", EOF: true}
}

// blobAsHand converts a decoded target (either kind, hand-coded or twin)
// to the hand-coded type, as a value.
func blobAsHand(v any) any {
	switch v := v.(type) {
	case *plainPutChunk:
		return PutChunk(*v)
	case *plainBlobChunk:
		return BlobChunk(*v)
	case *PutChunk:
		return *v
	case *BlobChunk:
		return *v
	}
	panic(fmt.Sprintf("blobAsHand(%T)", v))
}

// blobAsPlain converts a hand-coded value to its twin.
func blobAsPlain(v any) any {
	switch v := v.(type) {
	case PutChunk:
		return plainPutChunk(v)
	case BlobChunk:
		return plainBlobChunk(v)
	}
	panic(fmt.Sprintf("blobAsPlain(%T)", v))
}

// checkBlobDecode decodes in as a k both ways, into a zero or a used
// value, and fails t unless both accept with the same value (Data's nil-ness
// included) or both refuse. It returns the decoded value, nil if refused.
func checkBlobDecode(t *testing.T, k blobKind, in []byte, used bool) any {
	t.Helper()
	hand, plain := blobTargets(k, used)
	herr := decodeJSON(in, hand)
	perr := decodeJSON(in, plain)
	if (herr == nil) != (perr == nil) {
		t.Fatalf("%v (used %v) %q:\nhand-coded: %v\nencoding/json: %v", k, used, in, herr, perr)
	}
	if herr != nil {
		return nil
	}
	got, want := blobAsHand(hand), blobAsHand(plain)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%v (used %v) %q decodes differently\nhand-coded:    %#v\nencoding/json: %#v", k, used, in, got, want)
	}
	return got
}

// checkBlobEncode encodes v (a hand-coded value) both ways and fails t
// unless the bytes are the same. It returns them.
func checkBlobEncode(t *testing.T, v any) []byte {
	t.Helper()
	got, err := encodeJSON(v)
	want, perr := encodeJSON(blobAsPlain(v))
	if err != nil || perr != nil || !bytes.Equal(got, want) {
		t.Fatalf("encoding %#v\nhand-coded:    %.300s (%v)\nencoding/json: %.300s (%v)", v, got, err, want, perr)
	}
	return got
}

// checkBlobAll decodes in as both kinds, into zero and used values, and
// whatever decodes is encoded both ways and decoded again, unchanged.
func checkBlobAll(t *testing.T, in []byte) {
	t.Helper()
	for k := range numBlobKinds {
		for _, used := range []bool{false, true} {
			v := checkBlobDecode(t, k, in, used)
			if v == nil {
				continue
			}
			enc := checkBlobEncode(t, v)
			again := checkBlobDecode(t, k, enc, false)
			if !reflect.DeepEqual(again, v) {
				t.Fatalf("%v: decode → encode → decode changed the value\n got: %#v\nwant: %#v", k, again, v)
			}
		}
	}
}

const (
	okUploadID = `"0123456789abcdef0123456789abcdef"`
	helloSum   = `"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"`
	okPut      = `{"upload_id":` + okUploadID + `,"offset":0,"data":"aGVsbG8=","sha256":` + helloSum + `}`
	okGet      = `{"key":"a/b","offset":0,"data":"aGVsbG8=","sha256":` + helloSum + `,"size":5,"blob_sha256":` + helloSum + `,"eof":true}`
)

// blobCases are inputs at the edges of what encoding/json accepts; each is
// decoded as both types.
var blobCases = []struct {
	name string
	in   string
	kind blobKind // the kind the input is meant for
	ok   bool     // whether that kind accepts it
}{
	{"put", okPut, kindPut, true},
	{"get", okGet, kindGet, true},
	{"empty object", `{}`, kindPut, true},
	{"whitespace", " \t\r\n{ \"data\" :\t\"AQ==\" , \"offset\"\n:\r1 }\n ", kindPut, true},
	{"null fields put", `{"upload_id":null,"offset":null,"data":null,"sha256":null}`, kindPut, true},
	{"null fields get", `{"key":null,"offset":null,"data":null,"sha256":null,"size":null,"blob_sha256":null,"eof":null}`, kindGet, true},
	{"unknown field", `{"data":"AQ==","extra":1}`, kindPut, false},
	{"unknown null field", `{"extra":null}`, kindPut, false},
	{"get field in put", `{"key":"a"}`, kindPut, false},
	{"put field in get", `{"upload_id":` + okUploadID + `}`, kindGet, false},
	{"trailing garbage", `{"data":"AQ=="} x`, kindPut, false},
	{"trailing object", `{}{}`, kindPut, false},
	{"null top", `null`, kindPut, false},
	{"array top", `[]`, kindPut, false},
	{"empty input", ``, kindPut, false},
	{"BOM", "\uFEFF{}", kindPut, false},
	{"unclosed", `{"data":"AQ=="`, kindPut, false},
	{"trailing comma", `{"data":"AQ==",}`, kindPut, false},
	{"missing colon", `{"data" "AQ=="}`, kindPut, false},

	// Data as a string: base64.StdEncoding on the unescaped string.
	{"data empty", `{"data":""}`, kindPut, true},
	{"data one byte", `{"data":"AQ=="}`, kindPut, true},
	{"data two bytes", `{"data":"AQI="}`, kindPut, true},
	{"data three bytes", `{"data":"AQID"}`, kindPut, true},
	{"data trailing bits", `{"data":"AR=="}`, kindPut, true}, // not strict: encoding/json accepts it
	{"data no padding", `{"data":"aGVsbG8"}`, kindPut, false},
	{"data short padding", `{"data":"AQ="}`, kindPut, false},
	{"data padding only", `{"data":"===="}`, kindPut, false},
	{"data one char", `{"data":"A"}`, kindPut, false},
	{"data padding in the middle", `{"data":"AQ==AQ=="}`, kindPut, false},
	{"data url alphabet", `{"data":"-_8="}`, kindPut, false},
	{"data std alphabet", `{"data":"+/8="}`, kindPut, true},
	{"data space", `{"data":"aGVs bG8="}`, kindPut, false},
	{"data escaped CR LF", `{"data":"aGVs\r\nbG8="}`, kindPut, true},
	{"data escaped LF only", `{"data":"\n"}`, kindPut, true},
	{"data escaped LF after padding", `{"data":"AQ==\n\n"}`, kindPut, true},
	{"data escaped LF inside padding", `{"data":"AQ=\n="}`, kindPut, true},
	{"data unicode-escaped LF", `{"data":"AQ\u000a=="}`, kindPut, true},
	{"data escaped tab", `{"data":"aGVs\tbG8="}`, kindPut, false},
	{"data raw LF", "{\"data\":\"aGVs\nbG8=\"}", kindPut, false},
	{"data raw CR", "{\"data\":\"aGVs\rbG8=\"}", kindPut, false},
	{"data raw CR LF only", "{\"data\":\"\r\n\"}", kindPut, false},
	{"data raw LF after padding", "{\"data\":\"AQ==\n\"}", kindPut, false},
	{"data raw tab", "{\"data\":\"aGVs\tbG8=\"}", kindPut, false},
	{"data raw NUL", "{\"data\":\"AQ==\x00\"}", kindPut, false},
	{"data escaped slash", `{"data":"\/\/8="}`, kindPut, true},
	{"data unicode escapes", `{"data":"\u0061GVsbG8\u003d"}`, kindPut, true},
	{"data escaped quote", `{"data":"AQ\"=="}`, kindPut, false},
	{"data escaped backslash", `{"data":"AQ\\=="}`, kindPut, false},
	{"data bad escape", `{"data":"AQ\x=="}`, kindPut, false},
	{"data lone surrogate", `{"data":"AQ\ud800=="}`, kindPut, false},
	{"data invalid UTF-8", "{\"data\":\"AQ\xff==\"}", kindPut, false},
	{"data non-ASCII", `{"data":"AQé="}`, kindPut, false},
	{"data unclosed", `{"data":"AQ==`, kindPut, false},
	{"data unclosed after escape", `{"data":"AQ\n==`, kindPut, false},
	{"data as number", `{"data":1}`, kindPut, false},
	{"data as bool", `{"data":true}`, kindPut, false},
	{"data as object", `{"data":{}}`, kindPut, false},
	{"data long", `{"data":"` + strings.Repeat("AQID", 1000) + `"}`, kindGet, true},

	// Data as an array: bytes, decoded into the slice already there.
	{"data empty array", `{"data":[]}`, kindPut, true},
	{"data empty array spaced", `{"data":[ ]}`, kindPut, true},
	{"data array", `{"data":[0,1,127,255]}`, kindPut, true},
	{"data array spaced", `{"data":[ 1 , 2 ]}`, kindPut, true},
	{"data array null", `{"data":[null]}`, kindPut, true},
	{"data array nulls past length", `{"data":[7,null,null,null,null,null,null]}`, kindPut, true},
	{"data array 256", `{"data":[256]}`, kindPut, false},
	{"data array 1000", `{"data":[1000]}`, kindPut, false},
	{"data array huge", `{"data":[99999999999999999999999]}`, kindPut, false},
	{"data array negative", `{"data":[-1]}`, kindPut, false},
	{"data array minus zero", `{"data":[-0]}`, kindPut, false},
	{"data array fraction", `{"data":[1.0]}`, kindPut, false},
	{"data array exponent", `{"data":[1e0]}`, kindPut, false},
	{"data array leading zero", `{"data":[01]}`, kindPut, false},
	{"data array string", `{"data":["1"]}`, kindPut, false},
	{"data array bool", `{"data":[true]}`, kindPut, false},
	{"data array nested", `{"data":[[1]]}`, kindPut, false},
	{"data array object", `{"data":[{}]}`, kindPut, false},
	{"data array trailing comma", `{"data":[1,]}`, kindPut, false},
	{"data array missing comma", `{"data":[1 2]}`, kindPut, false},
	{"data array unclosed", `{"data":[1`, kindPut, false},
	{"data array deep", `{"data":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, kindPut, false},

	// Duplicates: the last wins; an array reuses what an earlier value left.
	{"data twice", `{"data":"AQ==","data":"AgI="}`, kindPut, true},
	{"data string then array of nulls", `{"data":"AQID","data":[null,null,null,null]}`, kindPut, true},
	{"data padded string then nulls", `{"data":"AQ==","data":[null,null,null]}`, kindPut, true},
	{"data arrays", `{"data":[1,2,3,4,5],"data":[9],"data":[null,null,null,null,null]}`, kindPut, true},
	{"data array then null", `{"data":[1],"data":null,"data":[null]}`, kindPut, true},
	{"data array then empty", `{"data":[1,2],"data":[],"data":[null]}`, kindPut, true},
	{"data then bad data", `{"data":"AQ==","data":"A"}`, kindPut, false},
	{"fields twice", `{"offset":1,"offset":null,"sha256":"a","sha256":"b","upload_id":` + okUploadID + `,"upload_id":null}`, kindPut, true},
	{"eof twice", `{"eof":true,"eof":null,"size":1,"size":2}`, kindGet, true},

	// Keys, folded as encoding/json folds them.
	{"upper case keys put", `{"UPLOAD_ID":` + okUploadID + `,"Offset":1,"DaTa":"AQ==","SHA256":"x"}`, kindPut, true},
	{"upper case keys get", `{"KEY":"k","Size":1,"BLOB_SHA256":"x","Eof":true}`, kindGet, true},
	{"long s key", `{"ſha256":"x","blob_ſha256":"y","ſize":1}`, kindGet, true},
	{"kelvin key", `{"\u212aey":"k"}`, kindGet, true},
	{"escaped key", `{"\u0064ata":"AQ==","e\u006ff":true}`, kindGet, true},
	{"key without underscore", `{"uploadid":` + okUploadID + `}`, kindPut, false},
	{"key with dash", `{"upload-id":` + okUploadID + `}`, kindPut, false},
	{"key prefix", `{"dat":"AQ=="}`, kindPut, false},
	{"key longer", `{"datas":"AQ=="}`, kindPut, false},
	{"empty key", `{"":1}`, kindPut, false},
	{"dotless i key", `{"upload_ıd":` + okUploadID + `}`, kindPut, false},

	// The upload ID, by ID.UnmarshalText.
	{"id escaped", `{"upload_id":"\u0030123456789abcdef0123456789abcdef"}`, kindPut, true},
	{"id zero", `{"upload_id":"00000000000000000000000000000000"}`, kindPut, true},
	{"id upper case", `{"upload_id":"0123456789ABCDEF0123456789abcdef"}`, kindPut, false},
	{"id short", `{"upload_id":"0123456789abcdef0123456789abcde"}`, kindPut, false},
	{"id long", `{"upload_id":"0123456789abcdef0123456789abcdef0"}`, kindPut, false},
	{"id empty", `{"upload_id":""}`, kindPut, false},
	{"id invalid UTF-8", "{\"upload_id\":\"0123456789abcdef0123456789abcde\xff\"}", kindPut, false},
	{"id as number", `{"upload_id":1}`, kindPut, false},
	{"id as array", `{"upload_id":[0,1]}`, kindPut, false},
	{"id as object", `{"upload_id":{}}`, kindPut, false},
	{"id as bool", `{"upload_id":false}`, kindPut, false},

	// Numbers, booleans and strings.
	{"max int64", `{"offset":9223372036854775807,"size":-9223372036854775808}`, kindGet, true},
	{"over int64", `{"offset":9223372036854775808}`, kindPut, false},
	{"minus zero", `{"offset":-0}`, kindPut, true},
	{"fraction", `{"offset":1.5}`, kindPut, false},
	{"exponent", `{"size":1e3}`, kindGet, false},
	{"number as string", `{"offset":"1"}`, kindPut, false},
	{"eof false", `{"eof":false}`, kindGet, true},
	{"eof as number", `{"eof":1}`, kindGet, false},
	{"eof as string", `{"eof":"true"}`, kindGet, false},
	{"eof truncated", `{"eof":tru}`, kindGet, false},
	{"key escapes", `{"key":"a\u00e9\ud83d\ude00\/\"\\\b\f\n\r\t"}`, kindGet, true},
	{"key lone surrogate", `{"key":"\ud83d"}`, kindGet, true},
	{"key invalid UTF-8", "{\"key\":\"a\xffb\"}", kindGet, true},
	{"key raw control", "{\"key\":\"a\x01b\"}", kindGet, false},
	{"key as number", `{"key":1}`, kindGet, false},
	{"sha256 as array", `{"sha256":[]}`, kindPut, false},
}

func TestBlobJSONCases(t *testing.T) {
	for _, tc := range blobCases {
		t.Run(tc.name, func(t *testing.T) {
			hand, _ := blobTargets(tc.kind, false)
			err := decodeJSON([]byte(tc.in), hand)
			if (err == nil) != tc.ok {
				t.Fatalf("%v: decodeJSON(%.200q) = %v, want ok %v", tc.kind, tc.in, err, tc.ok)
			}
			checkBlobAll(t, []byte(tc.in))
		})
	}
}

// TestBlobJSONValues pins decoded values and encodings where encoding/json's
// behaviour is easy to get wrong, so that a change in encoding/json shows
// here too.
func TestBlobJSONValues(t *testing.T) {
	decode := func(in string, m *PutChunk) {
		t.Helper()
		if err := decodeJSON([]byte(in), m); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
	}
	var m PutChunk
	decode(`{"data":"aGVs\r\nbG8\u003d"}`, &m)
	if string(m.Data) != "hello" {
		t.Fatalf("escaped newlines: data %q", m.Data)
	}
	decode(`{"data":""}`, &m)
	if m.Data == nil || len(m.Data) != 0 {
		t.Fatalf(`"": data %#v, want empty, not nil`, m.Data)
	}
	decode(`{"data":null}`, &m)
	if m.Data != nil {
		t.Fatalf("null: data %#v, want nil", m.Data)
	}
	backing := []byte{1, 2, 3, 4}
	m = PutChunk{Data: backing[:1]}
	decode(`{"data":[9,null,null]}`, &m)
	if !bytes.Equal(m.Data, []byte{9, 2, 3}) || &m.Data[0] != &backing[0] {
		t.Fatalf("array into a used slice: data %v, backing %v", m.Data, backing)
	}
	decode(`{"data":[]}`, &m)
	if m.Data == nil || len(m.Data) != 0 || cap(m.Data) != 0 {
		t.Fatalf("[]: data %#v (cap %d)", m.Data, cap(m.Data))
	}

	enc, err := encodeJSON(PutChunk{UploadID: testID(1), Offset: -3, Data: []byte{0xfb, 0xff}, SHA256: "<&>\u2028\xff"})
	want := `{"upload_id":"` + testID(1).String() + `","offset":-3,"data":"+/8=","sha256":"<&>\u2028\ufffd"}`
	if err != nil || string(enc) != want {
		t.Fatalf("encoded %s (%v)\nwant %s", enc, err, want)
	}
	enc, err = encodeJSON(BlobChunk{Key: "k", Data: []byte{}})
	want = `{"key":"k","offset":0,"data":"","sha256":"","size":0,"blob_sha256":"","eof":false}`
	if err != nil || string(enc) != want {
		t.Fatalf("encoded %s (%v)\nwant %s", enc, err, want)
	}
	enc, err = encodeJSON(BlobChunk{EOF: true})
	want = `{"key":"","offset":0,"data":null,"sha256":"","size":0,"blob_sha256":"","eof":true}`
	if err != nil || string(enc) != want {
		t.Fatalf("encoded %s (%v)\nwant %s", enc, err, want)
	}
}

func TestBlobJSONErrors(t *testing.T) {
	// Errors say where and what, and never panic on cut-off input.
	for _, in := range []string{okPut, okGet, `{"data":[1,2,3],"offset":2}`, `{"data":"AQ\n==","key":"\u00e9"}`} {
		for n := range len(in) {
			for k := range numBlobKinds {
				hand, _ := blobTargets(k, true)
				err := decodeJSON([]byte(in[:n]), hand)
				if err == nil {
					t.Fatalf("%v: %q decodes", k, in[:n])
				}
				if n > 0 && !strings.HasPrefix(err.Error(), "contracts: JSON at offset") {
					t.Fatalf("%v: %q: error %q does not say where", k, in[:n], err)
				}
			}
		}
	}
	tests := []struct{ in, err string }{
		{`{"data":"AQ="}`, `contracts: JSON at offset 8: data: illegal base64 data at input byte 3`},
		{`{"data":"AQ\t=="}`, `contracts: JSON at offset 8: data: illegal base64 data at input byte 2`},
		{"{\"data\":\"AQ\n==\"}", `contracts: JSON at offset 11: control character 0x0a in string`},
		{`{"data":[1,256]}`, `contracts: JSON at offset 11: data: number out of range 0..255`},
		{`{"data":[-1]}`, `contracts: JSON at offset 9: data: want an integer 0..255, got a number`},
		{`{"data":{}}`, `contracts: JSON at offset 8: data: want a base64 string, got an object`},
		{`{"upload_id":"xyz"}`, `contracts: JSON at offset 13: upload_id: contracts: bad id: "xyz": want 32 lowercase hex digits`},
		{`{"offset":1,"colour":"red"}`, `contracts: JSON at offset 12: unknown field "colour"`},
	}
	for _, tc := range tests {
		var m PutChunk
		if err := decodeJSON([]byte(tc.in), &m); err == nil || err.Error() != tc.err {
			t.Errorf("%s: error %v\nwant %s", tc.in, err, tc.err)
		}
	}
}

// TestBlobJSONKeyFolding checks every field name with each letter replaced
// by its upper case and by each non-ASCII rune that folds to it, against
// encoding/json.
func TestBlobJSONKeyFolding(t *testing.T) {
	for _, name := range []string{"upload_id", "offset", "data", "sha256", "key", "size", "blob_sha256", "eof"} {
		for i := range name {
			for _, r := range []rune{rune(name[i]) - 'a' + 'A', 'ſ', '\u212a', 'ı', 'İ', '_', '0'} {
				key := name[:i] + string(r) + name[i+1:]
				in, _ := json.Marshal(key)
				for k := range numBlobKinds {
					checkBlobDecode(t, k, fmt.Appendf(nil, `{%s:null}`, in), false)
				}
			}
		}
	}
}

// TestBlobJSONRoundTrip encodes random chunks of 0..4 MiB (random strings
// beside: any Unicode, control characters, invalid UTF-8) both ways, and
// decodes the result both ways into zero and used values.
func TestBlobJSONRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0xb10b))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := 0; i < n; i += 8 {
			x := rng.Uint64()
			for j := i; j < min(i+8, n); j++ {
				b[j] = byte(x)
				x >>= 8
			}
		}
		return b
	}
	randText := func() string {
		switch rng.IntN(4) {
		case 0:
			return ""
		case 1:
			return string(randBytes(rng.IntN(40))) // invalid UTF-8, mostly
		}
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteRune(rune(rng.IntN(0x30000)))
		}
		return b.String()
	}
	sizes := []int{0, 1, 2, 3, 4, 5, 57, 4096, 1 << 16, 512 << 10, MaxBlobChunk}
	for range 40 {
		sizes = append(sizes, rng.IntN(1<<12))
	}
	for range 6 {
		sizes = append(sizes, rng.IntN(MaxBlobChunk+1))
	}
	if testing.Short() || raceEnabled {
		sizes = sizes[:len(sizes)-5] // encoding/json is slow on megabytes with -race
	}
	for i, n := range sizes {
		d := randBytes(n)
		if n == 0 && i%2 == 0 {
			d = nil
		}
		put := PutChunk{UploadID: NewID(time.Now()), Offset: rng.Int64() - rng.Int64(), Data: d, SHA256: randText()}
		get := BlobChunk{Key: randText(), Offset: rng.Int64(), Data: d, SHA256: randText(), Size: -rng.Int64(), BlobSHA256: randText(), EOF: rng.IntN(2) == 0}
		for k, v := range []any{put, get} {
			enc := checkBlobEncode(t, v)
			for _, used := range []bool{false, true} {
				got := checkBlobDecode(t, blobKind(k), enc, used)
				if got == nil {
					t.Fatalf("%.200s does not decode", enc)
				}
				if !reflect.DeepEqual(got, validStrings(v)) {
					t.Fatalf("%d bytes: round trip changed the value", n)
				}
			}
		}
	}
}

// validStrings returns v (a hand-coded value) as a round trip through JSON
// leaves it: each invalid UTF-8 byte of its strings U+FFFD.
func validStrings(v any) any {
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
	switch v := v.(type) {
	case PutChunk:
		v.SHA256 = str(v.SHA256)
		return v
	case BlobChunk:
		v.Key, v.SHA256, v.BlobSHA256 = str(v.Key), str(v.SHA256), str(v.BlobSHA256)
		return v
	}
	panic(fmt.Sprintf("validStrings(%T)", v))
}

// TestBlobJSONEnvelope: a chunk goes through New, Marshal, Unmarshal and
// DecodePayload by the hand-written codec, and validates.
func TestBlobJSONEnvelope(t *testing.T) {
	d := bytes.Repeat([]byte("zeroci blob "), 1000)
	env, err := New(BlobChunk{Key: "k", Offset: 0, Data: d, SHA256: BlobSHA256(d), Size: int64(len(d)), BlobSHA256: BlobSHA256(d), EOF: true})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := encodeJSON(plainBlobChunk{Key: "k", Data: d, SHA256: BlobSHA256(d), Size: int64(len(d)), BlobSHA256: BlobSHA256(d), EOF: true}); !bytes.Equal(env.Payload, want) {
		t.Fatalf("payload %.100s...", env.Payload)
	}
	wire, err := Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePayload[BlobChunk](back)
	if err != nil || !bytes.Equal(got.Data, d) || !got.EOF {
		t.Fatalf("decoded %v, %d bytes", err, len(got.Data))
	}
	back.Payload = bytes.Replace(back.Payload, []byte(`"eof":true`), []byte(`"eof":false`), 1)
	if _, err := DecodeAny(back); err == nil {
		t.Fatal("a chunk that says it is not the last one validates")
	}
}

// TestBlobJSONAllocations: a 512 KiB chunk encodes with one allocation
// (the buffer) and decodes with three (data, ID text, digest).
func TestBlobJSONAllocations(t *testing.T) {
	var m Message = benchPutChunk(512 << 10) // as encodePayload has it
	enc, err := encodeJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	// One allocation, the buffer, also for the longest numbers and null
	// data (the size guessed up front covers them); builds with -race show
	// a second.
	limit := 1.0
	if raceEnabled {
		limit = 2
	}
	for _, v := range []Message{m,
		PutChunk{UploadID: testID(1), Offset: math.MinInt64, SHA256: strings.Repeat("f", 64)},
		BlobChunk{Key: "k", Offset: math.MinInt64, SHA256: strings.Repeat("f", 64), Size: math.MinInt64, BlobSHA256: strings.Repeat("f", 64)},
	} {
		if n := testing.AllocsPerRun(5, func() { _, _ = encodeJSON(v) }); n > limit {
			t.Errorf("encoding a %T: %v allocations", v, n)
		}
	}
	if n := testing.AllocsPerRun(5, func() {
		var got PutChunk
		if err := decodeJSON(enc, &got); err != nil {
			t.Fatal(err)
		}
	}); n > 4 {
		t.Errorf("decoding: %v allocations", n)
	}
}

func benchPutChunk(n int) PutChunk {
	d := make([]byte, n)
	for i := range d {
		d[i] = byte(i*7 + i>>8)
	}
	return PutChunk{UploadID: testID(1), Offset: 3 << 20, Data: d, SHA256: BlobSHA256(d)}
}

// FuzzBlobChunkJSON decodes arbitrary input as PutChunk and BlobChunk,
// into a zero and a used value, with the hand-written codec and with
// encoding/json: both must accept it or both refuse it, decode it to the
// same value, and encode that value to the same bytes. The input also
// serves as a chunk's data and strings, to be encoded both ways and
// decoded back.
func FuzzBlobChunkJSON(f *testing.F) {
	for _, tc := range blobCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkBlobAll(t, in)
		v := BlobChunk{Key: string(in), Data: in, SHA256: string(in), Offset: int64(len(in))}
		got := checkBlobDecode(t, kindGet, checkBlobEncode(t, v), false)
		if got == nil || !reflect.DeepEqual(got, validStrings(v)) {
			t.Fatalf("round trip of %q: %#v", in, got)
		}
	})
}

// BenchmarkBlobChunkJSON: a PutChunk of 512 KiB encoded and decoded by
// the hand-written codec and by encoding/json (the twin, as before).
func BenchmarkBlobChunkJSON(b *testing.B) {
	m := benchPutChunk(512 << 10)
	p := plainPutChunk(m)
	enc, err := encodeJSON(m)
	if err != nil {
		b.Fatal(err)
	}
	run := func(name string, f func() error) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(m.Data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("encode/hand", func() error { _, err := encodeJSON(m); return err })
	run("encode/encoding-json", func() error { _, err := encodeJSON(p); return err })
	run("decode/hand", func() error { var v PutChunk; return decodeJSON(enc, &v) })
	run("decode/encoding-json", func() error { var v plainPutChunk; return decodeJSON(enc, &v) })
	run("both/hand", func() error {
		e, err := encodeJSON(m)
		if err != nil {
			return err
		}
		var v PutChunk
		return decodeJSON(e, &v)
	})
	run("both/encoding-json", func() error {
		e, err := encodeJSON(p)
		if err != nil {
			return err
		}
		var v plainPutChunk
		return decodeJSON(e, &v)
	})
}
