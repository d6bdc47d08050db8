package contracts

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"
)

const idLen = 16

// ID identifies a message, an event, a lease or an upload. It is 16 bytes:
// the first 6 a big-endian count of Unix milliseconds, the other 10 random
// (crypto/rand), so IDs sort by creation time to the millisecond (IDs made
// in the same millisecond sort randomly; there is no shared counter). The
// text form is 32 lowercase hex digits, which sorts the same way; envelopes
// carry the 16 bytes. The zero ID means "none".
//
// An ID is a value; it is safe to copy and compare with ==.
type ID [idLen]byte

// NewID returns a new ID stamped with t's millisecond (0 if t is before 1970).
func NewID(t time.Time) ID {
	var id ID
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	for i := 5; i >= 0; i-- {
		id[i] = byte(ms)
		ms >>= 8
	}
	// crypto/rand.Read never returns an error and always fills the buffer
	// (it crashes the program if the system's source fails).
	_, _ = rand.Read(id[6:])
	if id.IsZero() { // 1970-01-01 and 80 zero bits: keep "none" unambiguous
		id[idLen-1] = 1
	}
	return id
}

// ParseID parses the text form: exactly 32 lowercase hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if !utf8.ValidString(s) {
		return id, fmt.Errorf("%w in id", ErrInvalidUTF8)
	}
	if len(s) != 2*idLen {
		return id, fmt.Errorf("%w: %s: want 32 lowercase hex digits", ErrBadID, quote(s))
	}
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return id, fmt.Errorf("%w: %s: want 32 lowercase hex digits", ErrBadID, quote(s))
		}
	}
	_, _ = hex.Decode(id[:], []byte(s)) // checked above
	return id, nil
}

// IsZero reports whether id is the zero ID ("none").
func (id ID) IsZero() bool { return id == ID{} }

// Time returns the millisecond id was stamped with, in UTC.
func (id ID) Time() time.Time {
	var ms int64
	for i := 0; i < 6; i++ {
		ms = ms<<8 | int64(id[i])
	}
	return time.UnixMilli(ms).UTC()
}

// String returns the text form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// AppendText appends the text form to b.
func (id ID) AppendText(b []byte) ([]byte, error) { return hex.AppendEncode(b, id[:]), nil }

// MarshalText returns the text form; JSON carries IDs as strings.
func (id ID) MarshalText() ([]byte, error) { return id.AppendText(make([]byte, 0, 2*idLen)) }

// UnmarshalText parses the text form strictly (see ParseID).
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
