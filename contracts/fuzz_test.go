package contracts

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"testing"
)

// fixedEnvelope wraps msg with a fixed ID and time, so seeds are stable.
func fixedEnvelope(tb testing.TB, msg Message, correlation ID) []byte {
	tb.Helper()
	payload, err := encodeJSON(msg)
	if err != nil {
		tb.Fatal(err)
	}
	wire, err := Marshal(Envelope{Type: msg.MessageType(), Version: 1, ID: testID(1), Time: t0, CorrelationID: correlation, Payload: payload})
	if err != nil {
		tb.Fatal(err)
	}
	return wire
}

// FuzzDecode feeds arbitrary bytes to Unmarshal and DecodeAny. Neither may
// panic; whatever decodes must encode back to the same bytes, and a
// payload that decodes must survive decode → encode → decode unchanged.
// Seeds: a valid envelope of every registered type, plus the files in
// testdata/fuzz/FuzzDecode (hand-written edge cases and the corpus the
// fuzzer found).
func FuzzDecode(f *testing.F) {
	ex := examples(f)
	for _, name := range slices.Sorted(maps.Keys(ex)) {
		f.Add(fixedEnvelope(f, ex[name].valid, ID{}))
	}
	f.Add(fixedEnvelope(f, OK{}, testID(2)))

	f.Fuzz(func(t *testing.T, in []byte) {
		env, err := Unmarshal(in)
		if err != nil {
			var ee *EnvelopeError
			if !errors.As(err, &ee) || ee.Op != "decode" || ee.Err == nil {
				t.Fatalf("Unmarshal error is not a decode *EnvelopeError: %#v", err)
			}
			return
		}
		wire, err := Marshal(env)
		if err != nil {
			t.Fatalf("re-encoding a decoded envelope: %v", err)
		}
		if !bytes.Equal(wire, in) {
			t.Fatalf("re-encoding differs\n in: %x\nout: %x", in, wire)
		}
		again, err := Unmarshal(wire)
		if err != nil || !equalEnvelopes(env, again) {
			t.Fatalf("decode → encode → decode: %v\n%+v\n%+v", err, env, again)
		}

		msg, err := DecodeAny(env)
		if err != nil {
			if !errors.Is(err, ErrPayload) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeAny error wraps neither ErrPayload nor ErrInvalid: %v", err)
			}
			return
		}
		p1, err := encodeJSON(msg)
		if err != nil {
			t.Fatalf("re-encoding payload: %v", err)
		}
		env.Payload = p1
		msg2, err := DecodeAny(env)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v\n%s", err, p1)
		}
		p2, err := encodeJSON(msg2)
		if err != nil || !bytes.Equal(p1, p2) {
			t.Fatalf("payload round trip differs (%v)\n%s\n%s", err, p1, p2)
		}
	})
}
