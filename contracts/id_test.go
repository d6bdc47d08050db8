package contracts

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	id := NewID(t0)
	if !id.Time().Equal(t0.Truncate(time.Millisecond)) {
		t.Fatalf("Time() = %v, want %v", id.Time(), t0.Truncate(time.Millisecond))
	}
	if id == NewID(t0) {
		t.Fatal("two IDs of the same millisecond are equal")
	}
	// Later milliseconds sort later, in bytes and in text.
	var ids []string
	for i := range 5 {
		ids = append(ids, NewID(t0.Add(time.Duration(i)*time.Millisecond)).String())
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("not sorted: %v", ids)
	}
	if NewID(time.Unix(0, 0)).IsZero() || NewID(time.Time{}).IsZero() {
		t.Fatal("NewID returned the zero ID")
	}
}

func TestParseID(t *testing.T) {
	id := NewID(t0)
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(%s) = %s, %v", id, got, err)
	}
	if len(id.String()) != 32 || strings.ToLower(id.String()) != id.String() {
		t.Fatalf("text form %q", id)
	}
	tests := []struct {
		in  string
		err error
	}{
		{"", ErrBadID},
		{strings.Repeat("a", 31), ErrBadID},
		{strings.Repeat("a", 33), ErrBadID},
		{strings.Repeat("A", 32), ErrBadID},
		{strings.Repeat("g", 32), ErrBadID},
		{strings.Repeat("a", 30) + "é", ErrBadID},
		{strings.Repeat("a", 30) + "\xff\xfe", ErrInvalidUTF8},
		{"\xff", ErrInvalidUTF8},
	}
	for _, tc := range tests {
		if _, err := ParseID(tc.in); !errors.Is(err, tc.err) {
			t.Errorf("ParseID(%q) = %v, want %v", tc.in, err, tc.err)
		}
	}
}

func TestIDJSON(t *testing.T) {
	id := NewID(t0)
	b, err := json.Marshal(struct {
		ID  ID `json:"id"`
		Opt ID `json:"opt,omitzero"`
	}{ID: id})
	if err != nil || string(b) != `{"id":"`+id.String()+`"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var v struct{ ID ID }
	if err := json.Unmarshal(b, &v); err != nil || v.ID != id {
		t.Fatalf("Unmarshal = %s, %v", v.ID, err)
	}
	for _, bad := range []string{`{"id":"x"}`, `{"id":""}`, `{"id":7}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}
