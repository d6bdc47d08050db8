// Package recent remembers the last n keys added to a set, forgetting the
// oldest first: bounded memory for "have I seen this id lately?".
package recent

// Set holds at most n keys. It is not safe for concurrent use.
type Set[K comparable] struct {
	keys map[K]struct{}
	ring []K
	used []bool
	next int
}

// New returns a set that keeps the last n keys (n ≥ 1).
func New[K comparable](n int) *Set[K] {
	n = max(n, 1)
	return &Set[K]{keys: make(map[K]struct{}, n), ring: make([]K, n), used: make([]bool, n)}
}

// Add remembers k, forgetting the oldest key when the set is full.
func (s *Set[K]) Add(k K) {
	if _, ok := s.keys[k]; ok {
		return
	}
	if s.used[s.next] {
		delete(s.keys, s.ring[s.next])
	}
	s.ring[s.next], s.used[s.next] = k, true
	s.next = (s.next + 1) % len(s.ring)
	s.keys[k] = struct{}{}
}

// Has reports whether k is among the keys remembered.
func (s *Set[K]) Has(k K) bool {
	_, ok := s.keys[k]
	return ok
}

// Len is the number of keys remembered.
func (s *Set[K]) Len() int { return len(s.keys) }
