package contracts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/zeroci/zeroci/transport"
)

func TestNew(t *testing.T) {
	before := NewID(t0)
	env, err := New(GetRepo{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != TypeGetRepo || env.Version != 1 || env.ID.IsZero() || !env.CorrelationID.IsZero() {
		t.Fatalf("header %+v", env)
	}
	if env.Time.Location().String() != "UTC" || env.ID.Time().After(env.Time) || env.ID.String() <= before.String() {
		t.Fatalf("time %v, id %s (%v)", env.Time, env.ID, env.ID.Time())
	}
	if string(env.Payload) != `{"name":"web"}` {
		t.Fatalf("payload %s", env.Payload)
	}
	// Scripts stay readable: no HTML escaping.
	env, err = New(SetSecret{Repo: "web", Name: "A", Value: "a && b <c>"})
	if err != nil || !strings.Contains(string(env.Payload), `"a && b <c>"`) {
		t.Fatalf("payload %s, %v", env.Payload, err)
	}
}

func TestNewRefuses(t *testing.T) {
	var nilMsg *GetRepo
	tests := []struct {
		name string
		msg  Message
		err  error
	}{
		{"nil interface", nil, ErrInvalid},
		{"nil pointer", nilMsg, ErrInvalid},
		{"invalid", GetRepo{Name: "Web"}, ErrInvalid},
		{"unregistered", unregistered{}, ErrUnknownType},
		{"too large", AppendLog{Job: ref(), Attempt: 1, Seq: 1, Lines: bigLines(200, 60<<10)}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.msg); !errors.Is(err, tc.err) {
				t.Fatalf("New = %v, want %v", err, tc.err)
			}
		})
	}
}

// bigLines returns n valid lines of size bytes each.
func bigLines(n, size int) []LogLine {
	lines := validLines(1, n)
	for i := range lines {
		lines[i].Text = strings.Repeat("x", size)
	}
	return lines
}

// unregistered is a Message this package does not know.
type unregistered struct{}

func (unregistered) MessageType() string { return "test.unregistered" }
func (unregistered) Validate() error     { return nil }

// TestLargestChunkFits: a blob chunk of MaxBlobChunk bytes, base64 in JSON,
// fits in an envelope.
func TestLargestChunkFits(t *testing.T) {
	chunk := make([]byte, MaxBlobChunk)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	env, err := New(PutChunk{UploadID: testID(1), Offset: 0, Data: chunk, SHA256: BlobSHA256(chunk)})
	if err != nil {
		t.Fatal(err)
	}
	wire, err := Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePayload[PutChunk](back)
	if err != nil || len(got.Data) != MaxBlobChunk {
		t.Fatalf("decode: %v, %d bytes", err, len(got.Data))
	}
}

func TestDecodeStrict(t *testing.T) {
	env := testEnvelope(false)
	tests := []struct {
		name    string
		payload string
		err     error
	}{
		{"ok", `{"name":"web"}`, nil},
		{"ok with spaces", " \n{ \"name\" : \"web\" }\r\n\t", nil},
		{"unknown field", `{"name":"web","owner":"x"}`, ErrPayload},
		{"trailing object", `{"name":"web"}{}`, ErrPayload},
		{"trailing garbage", `{"name":"web"} x`, ErrPayload},
		{"null", `null`, ErrPayload},
		{"array", `[{"name":"web"}]`, ErrPayload},
		{"string", `"web"`, ErrPayload},
		{"empty", ``, ErrPayload},
		{"syntax", `{"name":`, ErrPayload},
		{"wrong JSON type", `{"name":7}`, ErrPayload},
		{"invalid value", `{"name":"-web"}`, ErrInvalid},
		{"missing field", `{}`, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := env
			e.Payload = []byte(tc.payload)
			var v GetRepo
			err := e.Decode(&v)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Decode = %v, want %v", err, tc.err)
			}
			if tc.err == nil && v.Name != "web" {
				t.Fatalf("decoded %+v", v)
			}
			got, err2 := DecodePayload[GetRepo](e)
			if (err == nil) != (err2 == nil) || (err == nil && got != v) {
				t.Fatalf("DecodePayload = %+v, %v; Decode = %+v, %v", got, err2, v, err)
			}
			if err2 != nil && got != (GetRepo{}) {
				t.Fatalf("DecodePayload returned %+v with an error", got)
			}
		})
	}
}

func TestDecodeZeroesTarget(t *testing.T) {
	env, err := New(ListRepos{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	v := ListRepos{Limit: 9, After: "stale"}
	if err := env.Decode(&v); err != nil || v != (ListRepos{Limit: 5}) {
		t.Fatalf("Decode into a used value: %+v, %v", v, err)
	}
}

func TestDecodeMismatch(t *testing.T) {
	env := testEnvelope(false)
	var nilRepo *GetRepo
	for name, v := range map[string]Message{
		"other type":    &DeleteRepo{},
		"not a pointer": GetRepo{},
		"nil pointer":   nilRepo,
		"nil":           nil,
	} {
		if err := env.Decode(v); !errors.Is(err, ErrTypeMismatch) {
			t.Errorf("%s: Decode = %v, want ErrTypeMismatch", name, err)
		}
	}
	if _, err := DecodePayload[DeleteRepo](env); !errors.Is(err, ErrTypeMismatch) {
		t.Errorf("DecodePayload = %v, want ErrTypeMismatch", err)
	}
	bad := env
	bad.Version = 2
	if err := bad.Decode(&GetRepo{}); !errors.Is(err, ErrSchemaVersion) {
		t.Errorf("version 2: %v", err)
	}
	if _, err := DecodeAny(bad); !errors.Is(err, ErrSchemaVersion) {
		t.Errorf("DecodeAny version 2: %v", err)
	}
	bad = env
	bad.Type = "test.unregistered"
	if err := bad.Decode(unregistered{}); !errors.Is(err, ErrTypeMismatch) {
		t.Errorf("unregistered value: %v", err)
	}
	if err := bad.Decode(&unregistered{}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unregistered pointer: %v", err)
	}
	if _, err := DecodeAny(bad); !errors.Is(err, ErrUnknownType) {
		t.Errorf("DecodeAny unregistered: %v", err)
	}
}

func TestDecodeAnyReturnsValues(t *testing.T) {
	env, err := New(BuildFinished{Status: BuildStatusFailure})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := DecodeAny(env)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := msg.(BuildFinished); !ok || v.Status != BuildStatusFailure {
		t.Fatalf("DecodeAny = %#v, want a BuildFinished value", msg)
	}
}

func TestReplies(t *testing.T) {
	req, err := New(GetRepo{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	repo := Repo{Name: "web", URL: "u", DefaultBranch: "main", CreatedAt: t0}
	rep, err := NewReply(req, repo)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CorrelationID != req.ID || rep.ID == req.ID {
		t.Fatalf("reply ids: %s answers %s (request %s)", rep.ID, rep.CorrelationID, req.ID)
	}
	got, err := DecodeReply[Repo](req, rep)
	if err != nil || got != repo {
		t.Fatalf("DecodeReply = %+v, %v", got, err)
	}

	// The wrong reply type for the request.
	if _, err := DecodeReply[Build](req, rep); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("DecodeReply[Build] = %v, want ErrTypeMismatch", err)
	}
	// A reply to another request.
	other, err := New(GetRepo{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeReply[Repo](other, rep); !errors.Is(err, ErrNotReply) {
		t.Fatalf("DecodeReply(other request) = %v, want ErrNotReply", err)
	}

	// An error reply comes back as an *Error.
	erep := NewErrorReply(req, NewError(CodeNotFound, `repo "web" not found`))
	if erep.Type != TypeError || erep.CorrelationID != req.ID {
		t.Fatalf("error reply %+v", erep)
	}
	_, err = DecodeReply[Repo](req, erep)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNotFound || CodeOf(err) != CodeNotFound || e.Code.HTTPStatus() != 404 {
		t.Fatalf("DecodeReply(error) = %v", err)
	}
	if err.Error() != `contracts: not_found: repo "web" not found` {
		t.Fatalf("message %q", err)
	}

	// A request that did not decode is answered without correlation.
	erep = NewErrorReply(Envelope{}, fmt.Errorf("handler: %w", ErrTruncated))
	if !erep.CorrelationID.IsZero() {
		t.Fatal("correlated to the zero envelope")
	}
	e2, err := DecodePayload[Error](erep)
	if err != nil || e2.Code != CodeInvalidArgument || !strings.Contains(e2.Message, "truncated") {
		t.Fatalf("error reply payload %+v, %v", e2, err)
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		code Code
	}{
		{nil, ""},
		{NewError(CodeConflict, "x"), CodeConflict},
		{fmt.Errorf("wrapped: %w", NewError(CodeTooOld, "x")), CodeTooOld},
		{&Error{Code: "bogus", Message: "x"}, CodeInternal},
		{GetRepo{Name: "A"}.Validate(), CodeInvalidArgument},
		{fmt.Errorf("x: %w", ErrPayload), CodeInvalidArgument},
		{fmt.Errorf("x: %w", ErrUnknownType), CodeInvalidArgument},
		{fmt.Errorf("x: %w", ErrTooLarge), CodeTooLarge},
		{fmt.Errorf("x: %w", transport.ErrTooLarge), CodeTooLarge},
		{fmt.Errorf("x: %w", transport.ErrNoResponder), CodeUnavailable},
		{&transport.DeadlineError{Service: "datastore"}, CodeUnavailable},
		{context.Canceled, CodeUnavailable},
		{errors.New("disk on fire"), CodeInternal},
	}
	for _, tc := range tests {
		if got := CodeOf(tc.err); got != tc.code {
			t.Errorf("CodeOf(%v) = %q, want %q", tc.err, got, tc.code)
		}
	}
	statuses := map[Code]int{
		CodeInvalidArgument: 400, CodeUnauthenticated: 401, CodePermissionDenied: 403, CodeNotFound: 404,
		CodeConflict: 409, CodeTooOld: 410, CodeTooLarge: 413, CodeInternal: 500, CodeUnavailable: 503, "bogus": 0,
	}
	for c, s := range statuses {
		if c.HTTPStatus() != s || c.Valid() != (s != 0) {
			t.Errorf("%s: HTTPStatus %d Valid %v, want %d", c, c.HTTPStatus(), c.Valid(), s)
		}
	}
}

func TestAsErrorCleansMessages(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code Code
		want func(string) bool
	}{
		{"nil", nil, CodeInternal, func(s string) bool { return s != "" }},
		{"invalid UTF-8", errors.New("bad \xff byte"), CodeInternal, func(s string) bool { return s == "bad \uFFFD byte" }},
		{"control", NewError(CodeConflict, "a\x00b\x1bc"), CodeConflict, func(s string) bool { return s == "a b c" }},
		{"empty", NewError(CodeNotFound, ""), CodeNotFound, func(s string) bool { return s == "not_found" }},
		{"long", errors.New(strings.Repeat("é", MaxErrorMessageLen)), CodeInternal, func(s string) bool {
			return len(s) <= MaxErrorMessageLen && len(s) >= MaxErrorMessageLen-1 && utf8.ValidString(s)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := AsError(tc.err)
			if e.Code != tc.code || !tc.want(e.Message) {
				t.Fatalf("AsError = %+v", e)
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("AsError result invalid: %v", err)
			}
			env := NewErrorReply(Envelope{}, tc.err)
			if _, err := DecodePayload[Error](env); err != nil {
				t.Fatalf("NewErrorReply payload: %v", err)
			}
		})
	}
}

// TestConcurrentUse shares one envelope and one message between
// goroutines; run with -race.
func TestConcurrentUse(t *testing.T) {
	msg := validBuild()
	env, err := New(msg)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := Marshal(env); err != nil {
					errs <- err
					return
				}
				e, err := Unmarshal(wire)
				if err != nil {
					errs <- err
					return
				}
				if _, err := DecodeAny(e); err != nil {
					errs <- err
					return
				}
				if _, err := New(msg); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
