package contracts

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/zeroci/zeroci/transport"
)

// Reply types any request may be answered with.
const (
	TypeError = "reply.error" // Error: the request failed
	TypeOK    = "reply.ok"    // OK: done, nothing to return
)

// MaxErrorMessageLen bounds Error.Message, in bytes.
const MaxErrorMessageLen = 4096

// Code classifies a failed request. Codes are snake_case and map to HTTP
// statuses (HTTPStatus) so the api module can answer with
// {"error": message, "code": code}.
type Code string

const (
	CodeInvalidArgument  Code = "invalid_argument"  // 400: a bad name, field or value
	CodeUnauthenticated  Code = "unauthenticated"   // 401: unknown token
	CodePermissionDenied Code = "permission_denied" // 403: the token's scope is too small
	CodeNotFound         Code = "not_found"         // 404: no such repo, build, job, blob, upload...
	CodeConflict         Code = "conflict"          // 409: exists already, or not allowed in the current state
	CodeTooOld           Code = "too_old"           // 410: the hub no longer holds events that old
	CodeTooLarge         Code = "too_large"         // 413: over a size limit
	CodeInternal         Code = "internal"          // 500: a fault of the responder
	CodeUnavailable      Code = "unavailable"       // 503: a module could not be reached in time
)

// Valid reports whether c is one of the codes above.
func (c Code) Valid() bool { return c.HTTPStatus() != 0 }

// HTTPStatus returns the HTTP status for c, or 0 for an unknown code.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalidArgument:
		return 400
	case CodeUnauthenticated:
		return 401
	case CodePermissionDenied:
		return 403
	case CodeNotFound:
		return 404
	case CodeConflict:
		return 409
	case CodeTooOld:
		return 410
	case CodeTooLarge:
		return 413
	case CodeInternal:
		return 500
	case CodeUnavailable:
		return 503
	}
	return 0
}

// Error is the reply to a request that failed (type reply.error). It is
// also an error: DecodeReply returns it, and handlers may return one to
// choose the code NewErrorReply sends.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"` // for people; never contains a secret value
}

// NewError returns an *Error; use it in handlers to pick a code.
func NewError(code Code, message string) *Error { return &Error{Code: code, Message: message} }

func (e *Error) Error() string { return "contracts: " + string(e.Code) + ": " + e.Message }

// MessageType returns TypeError.
func (Error) MessageType() string { return TypeError }

// Validate checks the code and the message.
func (e Error) Validate() error {
	return validate(TypeError,
		field("code", checkEnum(e.Code.Valid(), string(e.Code), "a known code")),
		field("message", all(nonEmpty(e.Message), checkText(e.Message, MaxErrorMessageLen, true))),
	)
}

// OK is the reply to a request that succeeded with nothing to return (type
// reply.ok).
type OK struct{}

// MessageType returns TypeOK.
func (OK) MessageType() string { return TypeOK }

// Validate accepts every OK.
func (OK) Validate() error { return nil }

// CodeOf classifies err: the Code of an *Error in its chain; invalid_argument
// for undecodable or invalid messages; too_large for oversized payloads;
// unavailable for transport failures and ended contexts; internal otherwise.
func CodeOf(err error) Code {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e) && e.Code.Valid():
		return e.Code
	case errors.Is(err, ErrTooLarge), errors.Is(err, transport.ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrPayload), errors.Is(err, ErrTypeMismatch),
		errors.Is(err, ErrFormatVersion), errors.Is(err, ErrTruncated), errors.Is(err, ErrTrailingBytes),
		errors.Is(err, ErrMalformed), errors.Is(err, ErrInvalidUTF8), errors.Is(err, ErrUnknownType),
		errors.Is(err, ErrSchemaVersion), errors.Is(err, ErrBadID), errors.Is(err, ErrBadTime):
		return CodeInvalidArgument
	case errors.Is(err, transport.ErrNoResponder), errors.Is(err, transport.ErrResponderLost),
		errors.Is(err, transport.ErrDeadlineExceeded), errors.Is(err, transport.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return CodeUnavailable
	}
	return CodeInternal
}

// AsError returns err as a valid *Error: the *Error in its chain if there is
// one, otherwise one with CodeOf(err) and err's text. The message is made
// valid UTF-8 and cut to MaxErrorMessageLen.
func AsError(err error) *Error {
	if err == nil {
		return &Error{Code: CodeInternal, Message: "nil error"}
	}
	var e *Error
	if errors.As(err, &e) && e.Code.Valid() {
		return &Error{Code: e.Code, Message: cleanMessage(e.Message, e.Code)}
	}
	code := CodeOf(err)
	return &Error{Code: code, Message: cleanMessage(err.Error(), code)}
}

// NewErrorReply returns a reply.error answering req with AsError(err). It
// cannot fail.
func NewErrorReply(req Envelope, err error) Envelope {
	env, encErr := NewReply(req, *AsError(err))
	if encErr != nil { // unreachable: AsError returns a valid Error
		env, _ = NewReply(req, Error{Code: CodeInternal, Message: "contracts: cannot encode error reply"})
	}
	return env
}

// cleanMessage makes s a valid Error.Message.
func cleanMessage(s string, code Code) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxErrorMessageLen {
		cut := MaxErrorMessageLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if strings.TrimSpace(s) == "" {
		s = string(code)
	}
	return s
}
