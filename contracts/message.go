package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"
)

// Message is a typed payload: one Go type per registered message type.
// Every Message of this package is a struct with value-receiver methods,
// JSON tags in snake_case, and a Validate that checks every field.
type Message interface {
	// MessageType returns the registered type name (a Type... constant).
	MessageType() string
	// Validate returns nil, or a *ValidationError naming the first field
	// that is wrong.
	Validate() error
}

// New validates msg and wraps it in a new envelope: a fresh ID, the current
// time and msg's registered schema version.
func New(msg Message) (Envelope, error) { return newEnvelope(msg, ID{}) }

// NewReply is New for an answer to req: the envelope's CorrelationID is
// req.ID (none if req is the zero Envelope, as when the request did not
// decode).
func NewReply(req Envelope, msg Message) (Envelope, error) { return newEnvelope(msg, req.ID) }

func newEnvelope(msg Message, correlation ID) (Envelope, error) {
	typ, err := typeOf(msg)
	if err != nil {
		return Envelope{}, err
	}
	info, ok := registry[typ]
	if !ok {
		return Envelope{}, fmt.Errorf("%w: %s", ErrUnknownType, quote(typ))
	}
	payload, err := encodePayload(info, msg)
	if err != nil {
		return Envelope{}, err
	}
	now := time.Now().UTC()
	return Envelope{
		Type:          typ,
		Version:       info.Version,
		ID:            NewID(now),
		Time:          now,
		CorrelationID: correlation,
		Payload:       payload,
	}, nil
}

// encodePayload validates msg and returns its JSON, at most MaxPayload bytes.
func encodePayload(info TypeInfo, msg Message) ([]byte, error) {
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	payload, err := encodeJSON(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPayload, info.Name, err)
	}
	if len(payload) > MaxPayload {
		return nil, encodeErr("payload", ErrTooLarge, info.Name+": "+sizeDetail(len(payload)))
	}
	return payload, nil
}

// Decode decodes e's payload into v, a non-nil pointer to the Go type
// registered for e.Type (zeroed first), strictly: the payload must be one JSON object with
// no unknown fields and nothing after it. Then it runs v.Validate.
// Errors wrap ErrTypeMismatch, ErrUnknownType, ErrSchemaVersion, ErrPayload
// or ErrInvalid.
func (e Envelope) Decode(v Message) error {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: Decode needs a non-nil pointer, got %T", ErrTypeMismatch, v)
	}
	if typ := v.MessageType(); typ != e.Type {
		return fmt.Errorf("%w: envelope is %s, value is %s", ErrTypeMismatch, quote(e.Type), typ)
	}
	info, err := e.info()
	if err != nil {
		return err
	}
	rv.Elem().SetZero() // fields absent from the payload must not keep old values
	if err := decodeJSON(e.Payload, v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPayload, info.Name, err)
	}
	return v.Validate()
}

// DecodePayload decodes e's payload into a T, a message struct (PT, *T, is
// inferred: DecodePayload[contracts.GetRepo](env)), as Decode does.
func DecodePayload[T any, PT interface {
	*T
	Message
}](e Envelope) (T, error) {
	var v T
	if err := e.Decode(PT(&v)); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// DecodeAny decodes e's payload into the Go type registered for e.Type and
// returns it as a value (e.g. a contracts.BuildFinished, not a pointer), for
// code that handles several types with a type switch.
func DecodeAny(e Envelope) (Message, error) {
	info, err := e.info()
	if err != nil {
		return nil, err
	}
	return info.decode(e.Payload)
}

// info returns e's registry entry if e.Type and e.Version are known.
func (e Envelope) info() (TypeInfo, error) {
	info, ok := registry[e.Type]
	if !ok {
		return info, fmt.Errorf("%w: %s", ErrUnknownType, quote(e.Type))
	}
	return info, checkVersion(info, e.Version)
}

// checkVersion accepts the schema version info's decoder knows.
func checkVersion(info TypeInfo, version uint16) error {
	if version != info.Version {
		return fmt.Errorf("%w: %s", ErrSchemaVersion, versionDetail(info.Name, version, info.Version))
	}
	return nil
}

// DecodeReply decodes rep, the reply to the request req, into a T. If rep
// is a reply.error it returns that *Error (so errors.As and CodeOf work on
// the result). It returns ErrNotReply if rep's CorrelationID is not req.ID,
// and ErrTypeMismatch if T is not the reply type registered for req.Type.
func DecodeReply[T any, PT interface {
	*T
	Message
}](req, rep Envelope) (T, error) {
	var zero T
	want := PT(&zero).MessageType()
	if info, ok := registry[req.Type]; ok && info.Kind == KindRequest && info.Reply != want {
		return zero, fmt.Errorf("%w: %s is answered by %s, not %s", ErrTypeMismatch, req.Type, info.Reply, want)
	}
	if rep.CorrelationID != req.ID {
		return zero, fmt.Errorf("%w: reply correlates %s, request is %s", ErrNotReply, rep.CorrelationID, req.ID)
	}
	if rep.Type == TypeError {
		e, err := DecodePayload[Error](rep)
		if err != nil {
			return zero, err
		}
		return zero, &e
	}
	return DecodePayload[T, PT](rep)
}

// decodeAs is the registry's decoder for T.
func decodeAs[T Message](payload []byte) (Message, error) {
	var v T
	if err := decodeJSON(payload, &v); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPayload, v.MessageType(), err)
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// typeOf returns msg's type name, refusing nil (an interface holding a nil
// pointer would panic in a value-receiver method).
func typeOf(msg Message) (string, error) {
	rv := reflect.ValueOf(msg)
	if !rv.IsValid() || (rv.Kind() == reflect.Pointer && rv.IsNil()) {
		return "", fmt.Errorf("%w: nil message", ErrInvalid)
	}
	return msg.MessageType(), nil
}

var errTrailing = errors.New("trailing data after the JSON object")

// decodeJSON decodes data, which must hold exactly one JSON object, into v
// with unknown fields rejected.
//
// encoding/json matches object keys case-insensitively and keeps the last
// of duplicate keys; strict decoding here does not change that. The log
// and blob chunk messages decode themselves (strictJSONDecoder, in
// logline_json.go and blobchunk_json.go) to the same effect.
func decodeJSON(data []byte, v any) error {
	i := 0
	for i < len(data) && isJSONSpace(data[i]) {
		i++
	}
	if i == len(data) || data[i] != '{' {
		return errors.New("not a JSON object")
	}
	if d, ok := v.(strictJSONDecoder); ok {
		return d.decodeStrictJSON(data)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

// encodeJSON returns v's compact JSON, without HTML escaping (payloads hold
// scripts and logs, where "&&" should stay readable) and without the
// Encoder's trailing newline. The log and blob chunk messages encode
// themselves (jsonAppender) to the same bytes.
func encodeJSON(v any) ([]byte, error) {
	if a, ok := v.(jsonAppender); ok {
		return a.appendJSON(nil)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
