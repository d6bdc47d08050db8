package contracts

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestNewEvent(t *testing.T) {
	tests := []struct {
		name    string
		subject Subject
		payload Message
		field   string // "" when valid
	}{
		{"repo", Subject{Repo: "web"}, RepoCreated{URL: "u", DefaultBranch: "main"}, ""},
		{"build", Subject{Repo: "web", Build: 3}, BuildQueued{}, ""},
		{"job", Subject{Repo: "web", Build: 3, Job: "test"}, JobStarted{RunnerID: "r1", Attempt: 1}, ""},
		{"log", Subject{Repo: "web", Build: 3, Job: "test"}, LogClosed{BlobKey: "logs/x"}, ""},
		{"none", Subject{}, TokenCreated{Name: "ci", Scope: ScopeRead, Hash: TokenHash("x")}, ""},
		{"token with repo", Subject{Repo: "web"}, TokenCreated{Name: "ci", Scope: ScopeRead, Hash: TokenHash("x")}, "repo"},
		{"repo event without repo", Subject{}, RepoDeleted{}, "repo"},
		{"repo event with build", Subject{Repo: "web", Build: 1}, SecretSet{Name: "A", Value: Sealed(base64.StdEncoding.EncodeToString(make([]byte, 40)))}, "build"},
		{"build event without build", Subject{Repo: "web"}, BuildStarted{Commit: commit40, Jobs: []PlannedJob{{ID: "a"}}}, "build"},
		{"build event with job", Subject{Repo: "web", Build: 1, Job: "x"}, BuildQueued{}, "job"},
		{"job event without job", Subject{Repo: "web", Build: 1}, JobSkipped{Reason: "r"}, "job"},
		{"bad repo", Subject{Repo: "Web", Build: 1, Job: "x"}, JobQueued{Attempt: 1}, "repo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := NewEvent(tc.subject, tc.payload)
			if tc.field != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("NewEvent = %v, want a failure at %q", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Seq != 0 || ev.ID.IsZero() || ev.Type != tc.payload.MessageType() || ev.Version != 1 || ev.Time.IsZero() {
				t.Fatalf("event %+v", ev)
			}
			// The hub numbers it; then it is a valid stored event whose
			// payload decodes back.
			if err := (PublishEvent{Event: ev}).Validate(); err != nil {
				t.Fatal(err)
			}
			ev.Seq = 1
			if err := ev.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := ev.DecodePayload()
			if err != nil {
				t.Fatal(err)
			}
			if got.MessageType() != tc.payload.MessageType() {
				t.Fatalf("payload decoded as %T", got)
			}
		})
	}
}

func TestNewEventRefusesNonEvents(t *testing.T) {
	for _, m := range []Message{GetRepo{Name: "web"}, Event{}, OK{}, unregistered{}, nil} {
		if _, err := NewEvent(Subject{Repo: "web"}, m); err == nil {
			t.Errorf("NewEvent(%T) succeeded", m)
		}
	}
	if _, err := NewEvent(Subject{}, TokenCreated{Name: "ci", Scope: "root"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid payload: %v", err)
	}
}

func TestEventChecks(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Event)
		field  string
	}{
		{"no id", func(e *Event) { e.ID = ID{} }, "id"},
		{"no time", func(e *Event) { e.Time = e.Time.AddDate(-100, 0, 0) }, "time"},
		{"not an event type", func(e *Event) { e.Type = TypeGetRepo }, "type"},
		{"unknown type", func(e *Event) { e.Type = "build.exploded" }, "type"},
		{"version", func(e *Event) { e.Version = 2 }, "type"},
		{"payload unknown field", func(e *Event) { e.Payload = []byte(`{"status":"success","x":1}`) }, "payload"},
		{"payload not JSON", func(e *Event) { e.Payload = []byte(`nope`) }, "payload"},
		{"payload missing", func(e *Event) { e.Payload = nil }, "payload"},
		{"payload too big", func(e *Event) {
			e.Payload = []byte(`{"status":"error","error":"` + strings.Repeat("x", MaxEventPayload) + `"}`)
		}, "payload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := storedEvent(t, 5)
			tc.change(&ev)
			var ve *ValidationError
			if err := ev.Validate(); !errors.As(err, &ve) || ve.Type != TypeEvent || ve.Field != tc.field {
				t.Fatalf("Validate = %v, want a failure at %q", err, tc.field)
			}
		})
	}
	unstored := storedEvent(t, 0)
	if err := unstored.Validate(); err == nil {
		t.Fatal("stored event without seq accepted")
	}
}

// TestEventJSON pins the record's JSON, which GET /api/v1/events serves.
func TestEventJSON(t *testing.T) {
	ev := storedEvent(t, 9)
	ev.Job = ""
	b, err := encodeJSON(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":9,"id":"` + ev.ID.String() + `","type":"build.finished","version":1,"time":"2025-03-14T15:09:26.535897932Z","repo":"web","build":7,"payload":{"status":"success"}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || back.Validate() != nil {
		t.Fatalf("%v / %v", err, back.Validate())
	}
}

func TestEventBatchOrder(t *testing.T) {
	tests := []struct {
		name  string
		batch EventBatch
		field string
	}{
		{"empty", EventBatch{Next: 5, Head: 5}, ""},
		{"filtered past last", EventBatch{Events: []Event{storedEvent(t, 3)}, Next: 9, Head: 9}, ""},
		{"next before last", EventBatch{Events: []Event{storedEvent(t, 3)}, Next: 2, Head: 9}, "next"},
		{"head before next", EventBatch{Next: 5, Head: 4}, "head"},
		{"duplicate seq", EventBatch{Events: []Event{storedEvent(t, 3), storedEvent(t, 3)}, Next: 3, Head: 3}, "events[1].seq"},
		{"unstored event", EventBatch{Events: []Event{storedEvent(t, 0)}}, "events[0].seq"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.batch.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("Validate = %v, want a failure at %q", err, tc.field)
			}
		})
	}
}

// TestTopics pins the topic names modules subscribe to.
func TestTopics(t *testing.T) {
	if got := EventTopic(TypeBuildFinished); got != "events.build.finished" {
		t.Errorf("EventTopic = %q", got)
	}
	if !strings.HasPrefix(EventTopic(TypeBuildFinished), EventTopic("build.")) {
		t.Error("a type prefix does not select its events")
	}
	if got := CancelTopic("r1"); got != "dispatch.cancel.r1" {
		t.Errorf("CancelTopic = %q", got)
	}
}
