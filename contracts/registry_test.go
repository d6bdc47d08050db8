package contracts

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// isTypeName reports whether s is segments of [a-z][a-z0-9_]* joined by dots.
func isTypeName(s string) bool {
	if s == "" || len(s) > MaxTypeLen {
		return false
	}
	for seg := range strings.SplitSeq(s, ".") {
		if seg == "" || seg[0] < 'a' || seg[0] > 'z' {
			return false
		}
		for i := 1; i < len(seg); i++ {
			if c := seg[i]; !(isLowerAlnum(c) || c == '_') {
				return false
			}
		}
	}
	return true
}

func TestRegistryShape(t *testing.T) {
	services := []string{ServiceEventHub, ServiceDatastore, ServiceBlob, ServiceLogging, ServiceDispatch}
	types := Types()
	if len(types) != len(registry) {
		t.Fatalf("Types() has %d entries, registry %d", len(types), len(registry))
	}
	for i, ti := range types {
		if i > 0 && types[i-1].Name >= ti.Name {
			t.Errorf("Types() not sorted: %q before %q", types[i-1].Name, ti.Name)
		}
		if !isTypeName(ti.Name) {
			t.Errorf("%q is not a valid type name", ti.Name)
		}
		if ti.Version != 1 {
			t.Errorf("%s: version %d, want 1 (no type has been bumped yet)", ti.Name, ti.Version)
		}
		if got, ok := Lookup(ti.Name); !ok || got.Name != ti.Name {
			t.Errorf("Lookup(%q) = %v, %v", ti.Name, got.Name, ok)
		}
		switch ti.Kind {
		case KindRequest:
			if !slices.Contains(services, ti.Service) {
				t.Errorf("%s: service %q is not a known service", ti.Name, ti.Service)
			}
			if r, ok := registry[ti.Reply]; !ok || r.Kind != KindReply {
				t.Errorf("%s: reply %q is not a registered reply", ti.Name, ti.Reply)
			}
		case KindReply, KindEvent:
			if ti.Service != "" || ti.Reply != "" || ti.Topic != "" {
				t.Errorf("%s: a %s has service/reply/topic set", ti.Name, ti.Kind)
			}
		case KindPublication:
			if ti.Topic == "" || ti.Service != "" {
				t.Errorf("%s: publication topic %q, service %q", ti.Name, ti.Topic, ti.Service)
			}
		default:
			t.Errorf("%s: kind %v", ti.Name, ti.Kind)
		}
		if ti.Kind != KindEvent && ti.Subject != SubjectNone {
			t.Errorf("%s: subject level set on a %s", ti.Name, ti.Kind)
		}
	}
	for k, want := range map[Kind]string{KindRequest: "request", KindReply: "reply", KindEvent: "event", KindPublication: "publication", 0: "kind(0)"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k.String(), want)
		}
	}
	if _, ok := Lookup("no.such_type"); ok {
		t.Error("Lookup of an unknown type succeeded")
	}
}

// TestRegistryEventSubjects pins which events carry which subject fields.
func TestRegistryEventSubjects(t *testing.T) {
	want := map[string]SubjectLevel{
		TypeRepoCreated: SubjectRepo, TypeRepoDeleted: SubjectRepo, TypeSecretSet: SubjectRepo,
		TypeTokenCreated: SubjectNone, TypeLogClosed: SubjectJob,
	}
	for _, ti := range Types() {
		if ti.Kind != KindEvent {
			continue
		}
		w, ok := want[ti.Name]
		switch {
		case ok:
		case strings.HasPrefix(ti.Name, "build."):
			w = SubjectBuild
		case strings.HasPrefix(ti.Name, "job."):
			w = SubjectJob
		default:
			t.Errorf("%s: no expectation", ti.Name)
			continue
		}
		if ti.Subject != w {
			t.Errorf("%s: subject %d, want %d", ti.Name, ti.Subject, w)
		}
	}
}

// TestRegistryExamples walks the registry: every type round-trips a valid
// example through an envelope and rejects an invalid one.
func TestRegistryExamples(t *testing.T) {
	ex := examples(t)
	for _, ti := range Types() {
		if _, ok := ex[ti.Name]; !ok {
			t.Errorf("%s: no example", ti.Name)
		}
	}
	for name := range ex {
		if _, ok := registry[name]; !ok {
			t.Errorf("example for unregistered type %s", name)
		}
	}
	for name, c := range ex {
		t.Run(name, func(t *testing.T) {
			if got := c.valid.MessageType(); got != name {
				t.Fatalf("valid example is a %s", got)
			}
			if err := c.valid.Validate(); err != nil {
				t.Fatalf("valid example: %v", err)
			}
			env, err := New(c.valid)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			wire, err := Marshal(env)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			back, err := Unmarshal(wire)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			got, err := DecodeAny(back)
			if err != nil {
				t.Fatalf("DecodeAny: %v\npayload: %s", err, back.Payload)
			}
			if !reflect.DeepEqual(got, c.valid) {
				t.Fatalf("round trip changed the message\n got: %#v\nwant: %#v", got, c.valid)
			}
			again, err := encodeJSON(got)
			if err != nil || string(again) != string(env.Payload) {
				t.Fatalf("re-encoded payload differs (%v)\n got: %s\nwant: %s", err, again, env.Payload)
			}

			// The invalid example is refused when built and when received.
			payload := []byte(c.invalidJSON)
			if c.invalid != nil {
				if got := c.invalid.MessageType(); got != name {
					t.Fatalf("invalid example is a %s", got)
				}
				err := c.invalid.Validate()
				var ve *ValidationError
				if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("invalid example: Validate = %v, want a *ValidationError", err)
				}
				if ve.Type != name || ve.Field != c.field {
					t.Fatalf("invalid example failed at %s %q (%v), want %s %q", ve.Type, ve.Field, err, name, c.field)
				}
				if _, err := New(c.invalid); !errors.Is(err, ErrInvalid) {
					t.Fatalf("New(invalid) = %v, want ErrInvalid", err)
				}
				if payload, err = encodeJSON(c.invalid); err != nil {
					t.Fatal(err)
				}
			}
			bad := env
			bad.Payload = payload
			wire, err = Marshal(bad) // the envelope layer does not parse payloads
			if err != nil {
				t.Fatalf("Marshal(invalid payload): %v", err)
			}
			if back, err = Unmarshal(wire); err != nil {
				t.Fatalf("Unmarshal(invalid payload): %v", err)
			}
			_, err = DecodeAny(back)
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrPayload) {
				t.Fatalf("DecodeAny(invalid payload %s) = %v, want ErrInvalid or ErrPayload", payload, err)
			}
		})
	}
}
