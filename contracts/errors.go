package contracts

import (
	"errors"
	"strconv"
)

// Sentinel errors. Functions of this package wrap them with context (in an
// *EnvelopeError, a *ValidationError or with %w); test with errors.Is.
var (
	// ErrFormatVersion: the envelope's first byte is not a format version
	// this package can decode.
	ErrFormatVersion = errors.New("contracts: unsupported envelope format version")
	// ErrTruncated: the input ends inside a field.
	ErrTruncated = errors.New("contracts: truncated envelope")
	// ErrTrailingBytes: bytes follow the payload.
	ErrTrailingBytes = errors.New("contracts: trailing bytes after envelope")
	// ErrMalformed: a field's encoding is not allowed (unknown flag bits, a
	// type length out of range).
	ErrMalformed = errors.New("contracts: malformed envelope")
	// ErrInvalidUTF8: a type name or an id's text form is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("contracts: invalid UTF-8")
	// ErrUnknownType: the message type is not in the registry.
	ErrUnknownType = errors.New("contracts: unknown message type")
	// ErrSchemaVersion: the type is known but its schema version is not.
	ErrSchemaVersion = errors.New("contracts: unsupported schema version")
	// ErrTooLarge: a payload is over MaxPayload.
	ErrTooLarge = errors.New("contracts: payload too large")
	// ErrBadID: an id is zero where one is required, or its text form is not
	// 32 lowercase hex digits.
	ErrBadID = errors.New("contracts: bad id")
	// ErrBadTime: a time is zero, not after 1970-01-01 UTC, or too late to
	// count in int64 nanoseconds (after 2262).
	ErrBadTime = errors.New("contracts: bad time")
	// ErrPayload: the JSON payload does not decode strictly (syntax, unknown
	// field, wrong JSON type, trailing data, not an object).
	ErrPayload = errors.New("contracts: bad payload")
	// ErrTypeMismatch: a payload was decoded into a Go type registered for
	// another message type.
	ErrTypeMismatch = errors.New("contracts: message type mismatch")
	// ErrInvalid: a message failed its Validate. The error is a
	// *ValidationError naming the field.
	ErrInvalid = errors.New("contracts: invalid message")
	// ErrNotReply: a reply's correlation id is not the request's id.
	ErrNotReply = errors.New("contracts: reply does not answer the request")
)

// EnvelopeError reports why an envelope could not be encoded or decoded.
// Unwrap returns one of the sentinels above.
type EnvelopeError struct {
	Op     string // "encode" or "decode"
	Field  string // "format", "flags", "type", "version", "id", "time", "correlation_id", "payload" or "end"
	Offset int    // decode: the byte offset where the field starts; -1 for encode
	Err    error  // the sentinel
	Detail string // what was found, for people
}

func (e *EnvelopeError) Error() string {
	s := e.Err.Error() + " (" + e.Op + " " + e.Field
	if e.Offset >= 0 {
		s += " at byte " + strconv.Itoa(e.Offset)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s + ")"
}

// Unwrap returns the sentinel.
func (e *EnvelopeError) Unwrap() error { return e.Err }

// ValidationError reports the first field of a message that failed its
// Validate. errors.Is(err, ErrInvalid) is true.
type ValidationError struct {
	Type    string // the message type, e.g. "datastore.trigger_build"; "" for a lone value
	Field   string // path to the field, e.g. "jobs[2].depends_on[0]"; "" for the value itself
	Problem string // what is wrong, for people; never contains a secret value
}

func (e *ValidationError) Error() string {
	s := "contracts: invalid "
	switch {
	case e.Type != "" && e.Field != "":
		s += e.Type + ": " + e.Field
	case e.Type != "":
		s += e.Type
	case e.Field != "":
		s += e.Field
	default:
		s += "value"
	}
	return s + ": " + e.Problem
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }
