package contracts

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/zeroci/zeroci/transport"
)

// Envelope format and limits. The layout is documented in the package doc.
const (
	// FormatVersion is the envelope format this package writes, and the
	// only one it reads.
	FormatVersion = 1
	// MaxTypeLen bounds a message type name, in bytes.
	MaxTypeLen = 64
	// MaxHeaderLen is the largest envelope minus its payload.
	MaxHeaderLen = 3 + MaxTypeLen + 2 + idLen + 8 + idLen + 4
	// MaxPayload is the largest payload an envelope carries: what is left of
	// transport.MaxPayload after the largest header, so that every valid
	// envelope fits in one transport message.
	MaxPayload = transport.MaxPayload - MaxHeaderLen
)

const (
	flagCorrelation byte = 1 << 0 // a correlation id follows the time
	fixedLen             = 3 + 2 + idLen + 8 + 4
	maxUnixSec           = math.MaxInt64 / int64(time.Second) // last whole second int64 nanoseconds reach (2262)
)

// Envelope is one message on the transport: a typed, versioned, identified
// JSON payload. Build one with New, NewReply or NewErrorReply; encode it
// with Marshal or AppendEnvelope; decode it with Unmarshal, then its
// payload with Decode, DecodePayload or DecodeAny.
//
// An Envelope is a value and is treated as immutable once built: it may be
// read from several goroutines. Payload is shared, not copied, by the
// functions of this package (Unmarshal's result points into its input).
type Envelope struct {
	// Type is a registered message type, e.g. "datastore.trigger_build".
	Type string
	// Version is the schema version of Type's payload.
	Version uint16
	// ID is unique per message (never zero in a valid envelope). A
	// responder may use a request's ID to recognise a retried request.
	ID ID
	// Time is when the message was made, in UTC with nanoseconds.
	Time time.Time
	// CorrelationID is the ID of the message this one answers or was
	// caused by; zero means none.
	CorrelationID ID
	// Payload is the JSON encoding of the typed message.
	Payload []byte
}

// Size returns the length of e's encoding.
func (e Envelope) Size() int {
	n := fixedLen + len(e.Type) + len(e.Payload)
	if !e.CorrelationID.IsZero() {
		n += idLen
	}
	return n
}

// Marshal returns e's encoding. See AppendEnvelope.
func Marshal(e Envelope) ([]byte, error) {
	return AppendEnvelope(make([]byte, 0, e.Size()), e)
}

// AppendEnvelope appends e's encoding to dst and returns the extended
// buffer. It checks the header as Unmarshal does (registered type, known
// version, non-zero ID, time in range, payload size) and returns an
// *EnvelopeError, with dst unchanged, if one is wrong; the payload's JSON is
// not parsed. It does not allocate when dst has room for e.Size() more bytes.
func AppendEnvelope(dst []byte, e Envelope) ([]byte, error) {
	ns, err := e.checkHeader()
	if err != nil {
		return dst, err
	}
	flags := byte(0)
	if !e.CorrelationID.IsZero() {
		flags |= flagCorrelation
	}
	dst = slices.Grow(dst, e.Size())
	dst = append(dst, FormatVersion, flags, byte(len(e.Type)))
	dst = append(dst, e.Type...)
	dst = binary.BigEndian.AppendUint16(dst, e.Version)
	dst = append(dst, e.ID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ns))
	if flags&flagCorrelation != 0 {
		dst = append(dst, e.CorrelationID[:]...)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.Payload)))
	return append(dst, e.Payload...), nil
}

// checkHeader checks what AppendEnvelope writes and returns e.Time in Unix
// nanoseconds.
func (e Envelope) checkHeader() (int64, error) {
	info, ok := registry[e.Type]
	if !ok {
		return 0, encodeErr("type", ErrUnknownType, quote(e.Type))
	}
	if e.Version != info.Version {
		return 0, encodeErr("version", ErrSchemaVersion, versionDetail(e.Type, e.Version, info.Version))
	}
	if e.ID.IsZero() {
		return 0, encodeErr("id", ErrBadID, "zero")
	}
	ns, ok := unixNano(e.Time)
	if !ok {
		return 0, encodeErr("time", ErrBadTime, e.Time.String())
	}
	if len(e.Payload) > MaxPayload {
		return 0, encodeErr("payload", ErrTooLarge, sizeDetail(len(e.Payload)))
	}
	return ns, nil
}

// Unmarshal decodes one envelope that fills data exactly. It checks
// everything AppendEnvelope checks and the encoding itself (format version,
// flags, lengths, UTF-8 of the type, truncation, trailing bytes) and returns
// an *EnvelopeError wrapping one of the sentinels; it never panics. It does
// not parse the payload: Decode does.
//
// Unmarshal does not allocate. The returned Payload points into data, so
// data must not be modified while the envelope is in use (the transport
// hands every receiver its own copy, so a received message can be decoded
// in place).
func Unmarshal(data []byte) (Envelope, error) {
	var e Envelope
	r := reader{data: data}

	b, err := r.take("format", 1)
	if err != nil {
		return e, err
	}
	if b[0] != FormatVersion {
		return e, decodeErr("format", 0, ErrFormatVersion, "version "+strconv.Itoa(int(b[0]))+", want 1")
	}
	if b, err = r.take("flags", 1); err != nil {
		return e, err
	}
	flags := b[0]
	if unknown := flags &^ flagCorrelation; unknown != 0 {
		return e, decodeErr("flags", 1, ErrMalformed, fmt.Sprintf("unknown flag bits %#02x", unknown))
	}
	if b, err = r.take("type", 1); err != nil {
		return e, err
	}
	n := int(b[0])
	if n == 0 || n > MaxTypeLen {
		return e, decodeErr("type", 2, ErrMalformed, fmt.Sprintf("length %d, want 1..%d", n, MaxTypeLen))
	}
	if b, err = r.take("type", n); err != nil {
		return e, err
	}
	if !utf8.Valid(b) {
		return e, decodeErr("type", 3, ErrInvalidUTF8, "")
	}
	info, ok := registry[string(b)] // no allocation: the map key is not kept
	if !ok {
		return e, decodeErr("type", 3, ErrUnknownType, quote(string(b)))
	}
	e.Type = info.Name

	at := r.off
	if b, err = r.take("version", 2); err != nil {
		return e, err
	}
	e.Version = binary.BigEndian.Uint16(b)
	if e.Version != info.Version {
		return e, decodeErr("version", at, ErrSchemaVersion, versionDetail(e.Type, e.Version, info.Version))
	}

	at = r.off
	if b, err = r.take("id", idLen); err != nil {
		return e, err
	}
	e.ID = ID(b)
	if e.ID.IsZero() {
		return e, decodeErr("id", at, ErrBadID, "zero")
	}

	at = r.off
	if b, err = r.take("time", 8); err != nil {
		return e, err
	}
	ns := int64(binary.BigEndian.Uint64(b))
	if ns <= 0 {
		return e, decodeErr("time", at, ErrBadTime, strconv.FormatInt(ns, 10)+" ns, want > 0")
	}
	e.Time = time.Unix(0, ns).UTC()

	if flags&flagCorrelation != 0 {
		at = r.off
		if b, err = r.take("correlation_id", idLen); err != nil {
			return e, err
		}
		e.CorrelationID = ID(b)
		if e.CorrelationID.IsZero() {
			// "None" is written by leaving the flag clear, so that every
			// envelope has exactly one encoding.
			return e, decodeErr("correlation_id", at, ErrBadID, "zero, with the flag set")
		}
	}

	at = r.off
	if b, err = r.take("payload", 4); err != nil {
		return e, err
	}
	size := binary.BigEndian.Uint32(b)
	if size > MaxPayload {
		return e, decodeErr("payload", at, ErrTooLarge, sizeDetail(int(size)))
	}
	if e.Payload, err = r.take("payload", int(size)); err != nil {
		return e, err
	}
	if r.off != len(data) {
		return e, decodeErr("end", r.off, ErrTrailingBytes, strconv.Itoa(len(data)-r.off)+" bytes")
	}
	return e, nil
}

// reader walks an envelope's bytes.
type reader struct {
	data []byte
	off  int
}

// take returns the next n bytes (capacity-limited, so appending to them
// cannot overwrite what follows).
func (r *reader) take(field string, n int) ([]byte, error) {
	if len(r.data)-r.off < n {
		return nil, decodeErr(field, r.off, ErrTruncated, fmt.Sprintf("need %d bytes, have %d", n, len(r.data)-r.off))
	}
	b := r.data[r.off : r.off+n : r.off+n]
	r.off += n
	return b, nil
}

// unixNano returns t in Unix nanoseconds if t is after 1970 and before the
// end of int64 nanoseconds.
func unixNano(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, false
	}
	sec := t.Unix()
	if sec < 0 || sec >= maxUnixSec {
		return 0, false
	}
	ns := t.UnixNano()
	return ns, ns > 0
}

func decodeErr(field string, off int, err error, detail string) error {
	return &EnvelopeError{Op: "decode", Field: field, Offset: off, Err: err, Detail: detail}
}

func encodeErr(field string, err error, detail string) error {
	return &EnvelopeError{Op: "encode", Field: field, Offset: -1, Err: err, Detail: detail}
}

func versionDetail(typ string, got, want uint16) string {
	return fmt.Sprintf("%s version %d, know %d", typ, got, want)
}

func sizeDetail(n int) string {
	return fmt.Sprintf("%d bytes, max %d", n, MaxPayload)
}
