package contracts

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strconv"
)

// Hand-written JSON for the blob chunk messages.
//
// PutChunk and BlobChunk carry up to MaxBlobChunk bytes of data as one
// base64 string, and encoding/json spent most of a blob transfer's CPU
// scanning that string byte by byte, twice (json.Decoder's scan for the
// value's end, then the decoder's own), and re-growing the Decoder's
// buffer. These two types are therefore encoded and decoded by the code
// below, which shares its reader and string helpers with the log messages
// (logline_json.go) and is held to encoding/json's behaviour for these
// types by differential tests (blobchunk_json_test.go):
//
//   - encoding writes exactly the bytes encoding/json writes for the plain
//     structs with HTML escaping off (as encodeJSON does): fields in
//     declaration order, the ID by its MarshalText, Data as padded standard
//     base64 (base64.StdEncoding) or null if nil;
//   - decoding accepts exactly what decodeJSON (a json.Decoder with
//     DisallowUnknownFields) accepts, and decodes it to the same value:
//     keys matched as encoding/json folds them, the last of duplicate keys
//     winning, null leaving a field as it is except for Data (set to nil),
//     integers in encoding/json's grammar and range, the ID by its
//     UnmarshalText on the unescaped string, and Data as encoding/json
//     decodes a []byte: a string is unescaped and then decoded by
//     base64.StdEncoding.Decode into a new slice of DecodedLen bytes (so
//     padding is required, \r and \n are ignored, e.g. written as the
//     escapes \r\n, but raw control characters are refused as JSON
//     refuses them), and an array of integers 0..255 is decoded element by
//     element into the slice already there, as encoding/json decodes any
//     slice (null elements keep what the backing array held).
//
// The fast path reads a string without backslashes straight from the input
// (bytes.IndexByte finds its end) and hands it to the base64 decoder,
// which refuses every byte that JSON would refuse in a string but \r and
// \n; those are caught by the decoded length. Anything else (escapes, bad
// input) is read again by the general string reader, for the right
// decision and error.
//
// It never panics: every read is bounds-checked and bad input returns an
// error. On an error the target may be partly written, as with
// encoding/json.

// putChunkJSONSize bounds the length of a PutChunk's JSON besides its
// data's base64 and its digest: the names and punctuation (50 bytes, with
// null data), the ID's 32 hex digits and a 20-byte integer.
const putChunkJSONSize = 50 + 2*idLen + 20

// blobChunkJSONSize bounds the length of a BlobChunk's JSON besides its
// data's base64 and its strings: the names and punctuation (81 bytes, with
// null data and "false") and two 20-byte integers.
const blobChunkJSONSize = 81 + 2*20

func (m PutChunk) appendJSON(dst []byte) ([]byte, error) {
	dst = slices.Grow(dst, putChunkJSONSize+base64.StdEncoding.EncodedLen(len(m.Data))+len(m.SHA256))
	dst = append(dst, `{"upload_id":"`...)
	dst = hex.AppendEncode(dst, m.UploadID[:]) // ID.MarshalText: plain hex, nothing to escape
	dst = append(dst, `","offset":`...)
	dst = strconv.AppendInt(dst, m.Offset, 10)
	dst = append(dst, `,"data":`...)
	dst = appendJSONBytes(dst, m.Data)
	dst = append(dst, `,"sha256":`...)
	dst = appendJSONString(dst, m.SHA256)
	return append(dst, '}'), nil
}

func (m *PutChunk) decodeStrictJSON(data []byte) error {
	return decodeTop(data, func(r *jsonReader) error {
		return r.object(TypePutChunk, func(key []byte) error {
			switch fieldIndex(key, putChunkFields) {
			case 0:
				return r.idValue("upload_id", &m.UploadID)
			case 1:
				return r.int64Value("offset", &m.Offset)
			case 2:
				return r.bytesValue("data", &m.Data)
			case 3:
				return r.stringValue("sha256", &m.SHA256)
			}
			return r.unknownField(key)
		})
	})
}

func (m BlobChunk) appendJSON(dst []byte) ([]byte, error) {
	dst = slices.Grow(dst, blobChunkJSONSize+len(m.Key)+base64.StdEncoding.EncodedLen(len(m.Data))+len(m.SHA256)+len(m.BlobSHA256))
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, m.Key)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, m.Offset, 10)
	dst = append(dst, `,"data":`...)
	dst = appendJSONBytes(dst, m.Data)
	dst = append(dst, `,"sha256":`...)
	dst = appendJSONString(dst, m.SHA256)
	dst = append(dst, `,"size":`...)
	dst = strconv.AppendInt(dst, m.Size, 10)
	dst = append(dst, `,"blob_sha256":`...)
	dst = appendJSONString(dst, m.BlobSHA256)
	dst = append(dst, `,"eof":`...)
	dst = strconv.AppendBool(dst, m.EOF)
	return append(dst, '}'), nil
}

func (m *BlobChunk) decodeStrictJSON(data []byte) error {
	return decodeTop(data, func(r *jsonReader) error {
		return r.object(TypeBlobChunk, func(key []byte) error {
			switch fieldIndex(key, blobChunkFields) {
			case 0:
				return r.stringValue("key", &m.Key)
			case 1:
				return r.int64Value("offset", &m.Offset)
			case 2:
				return r.bytesValue("data", &m.Data)
			case 3:
				return r.stringValue("sha256", &m.SHA256)
			case 4:
				return r.int64Value("size", &m.Size)
			case 5:
				return r.stringValue("blob_sha256", &m.BlobSHA256)
			case 6:
				return r.boolValue("eof", &m.EOF)
			}
			return r.unknownField(key)
		})
	})
}

// Field names in declaration order, for fieldIndex.
var (
	putChunkFields  = []string{"upload_id", "offset", "data", "sha256"}
	blobChunkFields = []string{"key", "offset", "data", "sha256", "size", "blob_sha256", "eof"}
)

// appendJSONBytes appends b as encoding/json writes a []byte: null if nil,
// else a string of padded standard base64 (nothing in it needs escaping).
func appendJSONBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// idValue reads an ID as encoding/json does, by ID.UnmarshalText on the
// unescaped string: null leaves it, and any other JSON type is an error.
func (r *jsonReader) idValue(field string, dst *ID) error {
	if r.null() {
		return nil
	}
	at := r.pos
	s, err := r.stringAt(field)
	if err != nil {
		return err
	}
	if err := dst.UnmarshalText(s); err != nil {
		r.pos = at
		return r.fail("%s: %v", field, err)
	}
	return nil
}

// bytesValue reads a []byte as encoding/json does (see the top of this
// file): null sets it to nil, a string is base64, an array holds bytes.
func (r *jsonReader) bytesValue(field string, dst *[]byte) error {
	if r.null() {
		*dst = nil
		return nil
	}
	if r.pos < len(r.data) {
		switch r.data[r.pos] {
		case '"':
			return r.base64Value(field, dst)
		case '[':
			return r.byteArray(field, dst)
		}
	}
	return r.typeError(field, "a base64 string")
}

// base64Value reads the string at r.pos into *dst, a new slice, as
// encoding/json decodes a string into a []byte.
func (r *jsonReader) base64Value(field string, dst *[]byte) error {
	at := r.pos
	if s, ok := r.rawString(); ok {
		b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
		n, err := base64.StdEncoding.Decode(b, s)
		// Decoded, s held only the alphabet, padding, \r and \n; the
		// alphabet and padding alone are EncodedLen(n) bytes, so a longer
		// s held a raw \r or \n, which JSON refuses.
		if err == nil && base64.StdEncoding.EncodedLen(n) == len(s) {
			*dst = b[:n]
			return nil
		}
		r.pos = at // read it again below, for the error
	}
	s, err := r.str()
	if err != nil {
		return err
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	if err != nil {
		r.pos = at
		return r.fail("%s: %v", field, err)
	}
	*dst = b[:n]
	return nil
}

// rawString returns the bytes between the quote at r.pos and the next
// quote, and moves past that, if no backslash comes between them (so
// none is an escape and the second quote closes the string). It checks
// nothing else: the bytes may hold control characters or invalid UTF-8.
func (r *jsonReader) rawString() ([]byte, bool) {
	start := r.pos + 1
	n := bytes.IndexByte(r.data[start:], '"')
	if n < 0 {
		return nil, false
	}
	s := r.data[start : start+n]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	r.pos = start + n + 1
	return s, true
}

// byteArray reads an array of integers 0..255 (or nulls) into *dst as
// encoding/json decodes an array into a slice: [] sets an empty slice;
// otherwise element i goes to (*dst)[i], within the slice's capacity if it
// reaches that far (a null element keeps what the backing array held),
// and the slice ends at the last element.
func (r *jsonReader) byteArray(field string, dst *[]byte) error {
	r.pos++ // [
	r.space()
	if r.pos < len(r.data) && r.data[r.pos] == ']' {
		r.pos++
		*dst = []byte{}
		return nil
	}
	s := *dst
	i := 0
	for {
		switch {
		case i == cap(s): // then len(s) == i too
			s = append(s, 0)
		case i == len(s):
			s = s[:i+1]
		}
		err := r.byteElem(field, &s[i])
		i++
		if err != nil {
			*dst = s
			return err
		}
		r.space()
		if r.pos >= len(r.data) {
			*dst = s
			return r.fail("want , or ] in %s, got end of input", field)
		}
		c := r.data[r.pos]
		if c == ']' {
			r.pos++
			break
		}
		if c != ',' {
			*dst = s
			return r.fail("want , or ] in %s, got %s", field, r.found())
		}
		r.pos++
		r.space()
	}
	*dst = s[:i]
	return nil
}

// byteElem reads null (leaving *dst) or a number that must be an integer
// in 0..255, as strconv.ParseUint, which encoding/json uses, reads it.
func (r *jsonReader) byteElem(field string, dst *byte) error {
	if r.null() {
		return nil
	}
	data := r.data
	i := r.pos
	if i >= len(data) || data[i] < '0' || data[i] > '9' {
		return r.typeError(field, "an integer 0..255")
	}
	v := 0
	if data[i] == '0' {
		i++
	} else {
		for ; i < len(data) && '0' <= data[i] && data[i] <= '9'; i++ {
			if v = v*10 + int(data[i]-'0'); v > 255 {
				return r.fail("%s: number out of range 0..255", field)
			}
		}
	}
	if i < len(data) {
		switch c := data[i]; {
		case c == '.' || c == 'e' || c == 'E' || ('0' <= c && c <= '9'):
			return r.fail("%s: want an integer 0..255", field)
		}
	}
	r.pos = i
	*dst = byte(v)
	return nil
}
