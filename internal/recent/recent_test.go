package recent

import "testing"

func TestSetForgetsOldestFirst(t *testing.T) {
	s := New[string](3)
	for _, k := range []string{"a", "b", "c", "b"} { // a repeat does not take a slot
		s.Add(k)
	}
	if !s.Has("a") || !s.Has("b") || !s.Has("c") || s.Len() != 3 {
		t.Fatalf("after a, b, c, b: has a=%v b=%v c=%v len=%d", s.Has("a"), s.Has("b"), s.Has("c"), s.Len())
	}
	s.Add("d")
	if s.Has("a") || !s.Has("b") || !s.Has("d") || s.Len() != 3 {
		t.Fatalf("after d: a should be forgotten, b and d kept (len %d)", s.Len())
	}
	s.Add("e")
	s.Add("f")
	if s.Has("b") || s.Has("c") || !s.Has("e") || !s.Has("f") {
		t.Fatal("after e, f: b and c should be forgotten")
	}
}

func TestZeroValueKeyIsAKey(t *testing.T) {
	s := New[int](2)
	if s.Has(0) {
		t.Fatal("empty set has 0")
	}
	s.Add(0)
	s.Add(1)
	s.Add(2)
	if s.Has(0) || !s.Has(1) || !s.Has(2) {
		t.Fatal("0 should be forgotten first, like any key")
	}
}
