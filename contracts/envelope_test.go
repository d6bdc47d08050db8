package contracts

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

func testEnvelope(correlated bool) Envelope {
	e := Envelope{
		Type: TypeGetRepo, Version: 1, ID: testID(1), Time: t0,
		Payload: []byte(`{"name":"web"}`),
	}
	if correlated {
		e.CorrelationID = testID(2)
	}
	return e
}

func equalEnvelopes(a, b Envelope) bool {
	return a.Type == b.Type && a.Version == b.Version && a.ID == b.ID && a.Time.Equal(b.Time) &&
		a.CorrelationID == b.CorrelationID && bytes.Equal(a.Payload, b.Payload)
}

// TestEnvelopeLayout pins the wire layout documented in doc.go.
func TestEnvelopeLayout(t *testing.T) {
	e := testEnvelope(true)
	got, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	want = append(want, 1, 0x01, byte(len(TypeGetRepo)))
	want = append(want, TypeGetRepo...)
	want = append(want, 0, 1)
	want = append(want, e.ID[:]...)
	want = binary.BigEndian.AppendUint64(want, uint64(t0.UnixNano()))
	want = append(want, e.CorrelationID[:]...)
	want = append(want, 0, 0, 0, byte(len(e.Payload)))
	want = append(want, e.Payload...)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(want))
	}
	if len(got) != e.Size() {
		t.Fatalf("Size() = %d, encoding has %d bytes", e.Size(), len(got))
	}
	// Without a correlation id the flag is clear and the 16 bytes are absent.
	plain, err := Marshal(testEnvelope(false))
	if err != nil {
		t.Fatal(err)
	}
	if plain[1] != 0 || len(plain) != len(got)-idLen {
		t.Fatalf("uncorrelated: flags %#x, %d bytes (correlated %d)", plain[1], len(plain), len(got))
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, correlated := range []bool{false, true} {
		e := testEnvelope(correlated)
		wire, err := Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Unmarshal(wire)
		if err != nil {
			t.Fatal(err)
		}
		if !equalEnvelopes(e, back) {
			t.Fatalf("round trip: got %+v, want %+v", back, e)
		}
		if back.Time.Location() != time.UTC || back.Time.Nanosecond() != t0.Nanosecond() {
			t.Fatalf("time %v: want UTC with nanoseconds", back.Time)
		}
		// AppendEnvelope appends after existing bytes.
		buf, err := AppendEnvelope([]byte("prefix"), e)
		if err != nil || !bytes.Equal(buf[6:], wire) || string(buf[:6]) != "prefix" {
			t.Fatalf("AppendEnvelope: %v, %q", err, buf)
		}
	}
}

// TestUnmarshalPayloadAliases: the payload points into the input, without
// room to grow over the bytes after it.
func TestUnmarshalPayloadAliases(t *testing.T) {
	wire, err := Marshal(testEnvelope(false))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Unmarshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	if &e.Payload[0] != &wire[len(wire)-len(e.Payload)] {
		t.Fatal("payload was copied")
	}
	if cap(e.Payload) != len(e.Payload) {
		t.Fatalf("payload cap %d > len %d", cap(e.Payload), len(e.Payload))
	}
}

func TestUnmarshalErrors(t *testing.T) {
	good, err := Marshal(testEnvelope(true))
	if err != nil {
		t.Fatal(err)
	}
	typeEnd := 3 + len(TypeGetRepo)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	withType := func(name string) []byte {
		b := []byte{1, 0, byte(len(name))}
		b = append(b, name...)
		return append(b, good[typeEnd:]...)
	}
	payloadLenAt := typeEnd + 2 + idLen + 8 + idLen

	tests := []struct {
		name  string
		in    []byte
		err   error
		field string
	}{
		{"empty", nil, ErrTruncated, "format"},
		{"format version 0", mutate(func(b []byte) []byte { b[0] = 0; return b }), ErrFormatVersion, "format"},
		{"format version 2", mutate(func(b []byte) []byte { b[0] = 2; return b }), ErrFormatVersion, "format"},
		{"only format", good[:1], ErrTruncated, "flags"},
		{"unknown flag", mutate(func(b []byte) []byte { b[1] |= 0x80; return b }), ErrMalformed, "flags"},
		{"no type length", good[:2], ErrTruncated, "type"},
		{"type length 0", mutate(func(b []byte) []byte { b[2] = 0; return b }), ErrMalformed, "type"},
		{"type length 65", mutate(func(b []byte) []byte { b[2] = MaxTypeLen + 1; return b }), ErrMalformed, "type"},
		{"type cut", good[:5], ErrTruncated, "type"},
		{"type invalid UTF-8", withType("datastore.get_r\xffo"), ErrInvalidUTF8, "type"},
		{"type unknown", withType("datastore.get_rope"), ErrUnknownType, "type"},
		{"type case", withType("DATASTORE.GET_REPO"), ErrUnknownType, "type"},
		{"version cut", good[:typeEnd+1], ErrTruncated, "version"},
		{"version 0", mutate(func(b []byte) []byte { b[typeEnd+1] = 0; return b }), ErrSchemaVersion, "version"},
		{"version 2", mutate(func(b []byte) []byte { b[typeEnd+1] = 2; return b }), ErrSchemaVersion, "version"},
		{"id cut", good[:typeEnd+2+5], ErrTruncated, "id"},
		{"id zero", mutate(func(b []byte) []byte { clear(b[typeEnd+2 : typeEnd+2+idLen]); return b }), ErrBadID, "id"},
		{"time cut", good[:typeEnd+2+idLen+3], ErrTruncated, "time"},
		{"time zero", mutate(func(b []byte) []byte { clear(b[typeEnd+2+idLen : typeEnd+2+idLen+8]); return b }), ErrBadTime, "time"},
		{"time negative", mutate(func(b []byte) []byte { b[typeEnd+2+idLen] = 0x80; return b }), ErrBadTime, "time"},
		{"correlation cut", good[:typeEnd+2+idLen+8+1], ErrTruncated, "correlation_id"},
		{"correlation zero", mutate(func(b []byte) []byte { clear(b[typeEnd+2+idLen+8 : payloadLenAt]); return b }), ErrBadID, "correlation_id"},
		{"payload length cut", good[:payloadLenAt+2], ErrTruncated, "payload"},
		{"payload too large", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[payloadLenAt:], MaxPayload+1)
			return b
		}), ErrTooLarge, "payload"},
		{"payload length 4 GiB", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[payloadLenAt:], 0xffffffff)
			return b
		}), ErrTooLarge, "payload"},
		{"payload cut", good[:len(good)-1], ErrTruncated, "payload"},
		{"trailing byte", append(bytes.Clone(good), 0), ErrTrailingBytes, "end"},
		{"two envelopes", append(bytes.Clone(good), good...), ErrTrailingBytes, "end"},
		{"flag clear but correlation present", mutate(func(b []byte) []byte { b[1] = 0; return b }), nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.in)
			if tc.err == nil {
				// Reading the correlation id as the payload length gives
				// either a size error or trailing bytes; it must fail.
				if err == nil {
					t.Fatal("Unmarshal succeeded")
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var ee *EnvelopeError
			if !errors.As(err, &ee) || ee.Op != "decode" || ee.Field != tc.field {
				t.Fatalf("err = %#v, want an *EnvelopeError for field %q", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), "contracts: ") {
				t.Fatalf("message %q lacks the package prefix", err)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Envelope)
		err    error
	}{
		{"unknown type", func(e *Envelope) { e.Type = "datastore.nope" }, ErrUnknownType},
		{"empty type", func(e *Envelope) { e.Type = "" }, ErrUnknownType},
		{"version", func(e *Envelope) { e.Version = 2 }, ErrSchemaVersion},
		{"zero id", func(e *Envelope) { e.ID = ID{} }, ErrBadID},
		{"zero time", func(e *Envelope) { e.Time = time.Time{} }, ErrBadTime},
		{"epoch", func(e *Envelope) { e.Time = time.Unix(0, 0) }, ErrBadTime},
		{"before 1970", func(e *Envelope) { e.Time = time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC) }, ErrBadTime},
		{"after 2262", func(e *Envelope) { e.Time = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) }, ErrBadTime},
		{"payload too large", func(e *Envelope) { e.Payload = make([]byte, MaxPayload+1) }, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := testEnvelope(false)
			tc.change(&e)
			dst := []byte("keep")
			out, err := AppendEnvelope(dst, e)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var ee *EnvelopeError
			if !errors.As(err, &ee) || ee.Op != "encode" {
				t.Fatalf("err = %#v, want an encode *EnvelopeError", err)
			}
			if string(out) != "keep" {
				t.Fatalf("dst changed to %q", out)
			}
		})
	}
}

// TestMaxEnvelopeFitsTransport: the largest valid envelope is exactly
// transport.MaxPayload bytes when the type name has the maximum length; a
// real one is smaller.
func TestMaxEnvelopeFitsTransport(t *testing.T) {
	e := testEnvelope(true)
	e.Payload = make([]byte, MaxPayload)
	if n := e.Size() + MaxTypeLen - len(e.Type); n != transport.MaxPayload {
		t.Fatalf("largest envelope would be %d bytes, transport max %d", n, transport.MaxPayload)
	}
	wire, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(wire) > transport.MaxPayload {
		t.Fatalf("%d bytes > transport.MaxPayload", len(wire))
	}
	back, err := Unmarshal(wire)
	if err != nil || len(back.Payload) != MaxPayload {
		t.Fatalf("Unmarshal: %v, payload %d", err, len(back.Payload))
	}
}

func TestEnvelopeAllocations(t *testing.T) {
	e := testEnvelope(true)
	wire, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, e.Size())
	if n := testing.AllocsPerRun(100, func() {
		if _, err := AppendEnvelope(buf[:0], e); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("AppendEnvelope with room: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Unmarshal(wire); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Unmarshal: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Marshal(e); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("Marshal: %v allocations, want 1", n)
	}
}

func BenchmarkMarshal(b *testing.B) {
	e := testEnvelope(true)
	buf := make([]byte, 0, e.Size())
	b.ReportAllocs()
	b.SetBytes(int64(e.Size()))
	for b.Loop() {
		if _, err := AppendEnvelope(buf[:0], e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	wire, err := Marshal(testEnvelope(true))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		if _, err := Unmarshal(wire); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is Unmarshal plus the strict JSON decode and Validate of
// a typical request.
func BenchmarkDecode(b *testing.B) {
	env, err := New(TriggerBuild{Repo: "web", Ref: "main", Commit: commit40, Params: map[string]string{"A": "1"}, Event: TriggerManual, User: "admin"})
	if err != nil {
		b.Fatal(err)
	}
	wire, err := Marshal(env)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		e, err := Unmarshal(wire)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodePayload[TriggerBuild](e); err != nil {
			b.Fatal(err)
		}
	}
}
