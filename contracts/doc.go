// Package contracts defines what is inside the messages zeroci's modules
// exchange: the transport carries opaque bytes, and every one of those
// byte strings is an Envelope of this package holding one typed message.
// Modules import contracts, never each other.
//
// # Envelope
//
// An envelope carries a message type ("build.finished",
// "datastore.trigger_build"), the schema version of that type's payload,
// a unique ID, the time it was made (UTC, nanoseconds), an optional
// correlation ID (the ID of the request it answers or of the message that
// caused it) and the payload: the JSON of the typed message. The header is
// binary, for speed; the payload stays JSON, so it can be read in a dump
// and grow new fields.
//
// Wire format, format version 1 (integers big-endian, L the type's length):
//
//	offset       size  field
//	0            1     format version: 1
//	1            1     flags: bit 0 set when a correlation id is present; other bits 0
//	2            1     type length L: 1..MaxTypeLen (64)
//	3            L     type: a registered name (ASCII, so valid UTF-8)
//	3+L          2     schema version: uint16, as registered for the type
//	5+L          16    id: not all zero
//	21+L         8     time: int64 Unix nanoseconds, > 0
//	29+L         16    correlation id: only when flag bit 0 is set; not all zero
//	29+L[+16]    4     payload length N: uint32, at most MaxPayload
//	33+L[+16]    N     payload: one JSON object
//
// Nothing follows the payload. Each envelope has exactly one encoding, so
// decoding and re-encoding gives back the same bytes. MaxPayload is
// transport.MaxPayload less the largest header, so every valid envelope
// fits in a transport message. IDs are time-stamped random values (see
// ID).
//
// Unmarshal is strict and returns an *EnvelopeError (never panics) for an
// unknown format version, unknown flag bits, a bad type length, a type
// that is not valid UTF-8 or not registered, an unknown schema version, a
// zero id, a time not after 1970, an oversized payload, truncated input and
// trailing bytes. Decode then parses the payload strictly (one JSON object,
// no unknown fields, nothing after it) and runs the message's Validate,
// which checks every field: names against their patterns, lengths, enums,
// ranges, required fields and consistency (line numbers consecutive, a
// digest matching its data, a job graph without cycles...). Errors are
// sentinels (ErrTruncated, ErrUnknownType, ErrInvalid...) wrapped in
// *EnvelopeError or *ValidationError; test them with errors.Is and
// errors.As. encoding/json matches keys case-insensitively and keeps the
// last of duplicate keys; this package does not add checks for those.
//
// # Messages
//
// Each message type is one Go struct with a Type... constant, JSON tags in
// snake_case and a Validate method, listed in a registry (Types, Lookup)
// that says how it travels (Kind):
//
//   - requests, named service.verb ("datastore.get_build"), sent with
//     transport.Request to the service in TypeInfo.Service;
//   - replies, named for what they hold or say ("datastore.build",
//     "eventhub.published"), and reply.ok and reply.error, which any
//     request may get instead of its reply;
//   - event payloads, named subject.past_tense ("job.finished"), carried in
//     Event records that the event hub stores, numbers and serves;
//   - publications on topics: eventhub.event and dispatch.cancel.
//
// A responder answers with NewReply, or NewErrorReply for a failure: an
// Error with a snake_case Code that maps to an HTTP status. A caller reads
// the answer with DecodeReply, which turns reply.error into an *Error.
// A request retried by the transport (transport.Idempotent) carries the
// same envelope ID, which a responder may use to recognise it; publishing
// an event is idempotent by the event's own ID.
//
// # Versioning
//
// The envelope format version changes only if the binary layout does;
// decoders reject format versions they do not know.
//
// Each message type has its own schema version, today 1 for all. Adding
// an optional JSON field bumps nothing. Removing or renaming a field,
// changing its meaning or its type, or making it required is a breaking
// change and bumps the type's version; decoders accept only the versions
// they know (the registry lists one per type: a bump that must stay
// readable from older senders adds a conversion from the old shape).
//
// Decoding is strict, so a new field, or a new enum value, is rejected by
// decoders built before it: deploy a change to readers before writers.
// In one process all modules change together; a split deployment upgrades
// the readers of a message first.
//
// # Concurrency
//
// Messages, envelopes and events are values; once built they are treated
// as immutable and may be shared between goroutines (do not modify the
// maps, slices or payload bytes they hold after handing them on). The
// package has no mutable state: the registry is built during
// initialisation and only read afterwards, so every function is safe for
// concurrent use.
package contracts
