package ocitest

import (
	"net/http"
)

// FaultKind is what an injected fault does to a request.
type FaultKind int

const (
	// Unavailable answers 500 InternalServerError.
	Unavailable FaultKind = iota + 1
	// Hang answers nothing until the client gives up (or the server
	// stops).
	Hang
	// NotFound answers 404 NotFound.
	NotFound
	// Throttle answers 429 TooManyRequests.
	Throttle
)

// Fault makes matching requests fail. A request matches if its method and
// route match (empty matches any) and its signature verifies.
type Fault struct {
	Kind   FaultKind
	Method string
	Route  Route
	// Skip lets this many matching requests through first.
	Skip int
	// Times is how many matching requests fail (0 means 1).
	Times int
}

// Inject adds a fault. Faults are matched in the order they were added;
// a request meets at most one.
func (s *Server) Inject(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// fault applies the first matching fault; it reports whether it answered
// the request.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, route Route) bool {
	s.mu.Lock()
	var hit *Fault
	for i, f := range s.faults {
		if (f.Method != "" && f.Method != r.Method) || (f.Route != "" && f.Route != route) {
			continue
		}
		if f.Skip > 0 {
			f.Skip--
			break
		}
		hit = f
		if f.Times--; f.Times == 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		break
	}
	s.mu.Unlock()
	if hit == nil {
		return false
	}
	switch hit.Kind {
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		w.WriteHeader(http.StatusServiceUnavailable) // nobody reads it
	case NotFound:
		drain(r)
		writeError(w, http.StatusNotFound, "NotFound", "injected fault")
	case Throttle:
		drain(r)
		writeError(w, http.StatusTooManyRequests, "TooManyRequests", "injected fault")
	default:
		drain(r)
		writeError(w, http.StatusInternalServerError, "InternalServerError", "injected fault")
	}
	return true
}
