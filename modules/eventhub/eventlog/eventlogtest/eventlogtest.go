// Package eventlogtest is the conformance suite every eventlog.Log backend
// runs (like transporttest for transports): a backend's test calls Run with
// a Backend that makes fresh storage and opens Logs on it.
//
//	func TestConformance(t *testing.T) {
//		eventlogtest.Run(t, eventlogtest.Backend{New: newStorage})
//	}
//
// Each subtest gets its own storage, and checks at the end, after its
// cleanups ran, that no goroutine was leaked. Subtests run one after the
// other.
package eventlogtest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// Backend is how the suite gets logs of one implementation.
type Backend struct {
	// New makes fresh, empty storage for one subtest and returns a
	// function that opens a Log on it. The suite closes a Log and calls
	// open again to simulate a restart: the new Log must hold everything
	// the old one acknowledged. open must register the Log's Close with
	// t.Cleanup (Close is idempotent), and fail t if it cannot open.
	//
	// Compact removes whole segments or rows: unless CoarseCompaction is
	// set, the storage must be set up so that a few hundred 100-byte
	// records make up more than one unit of compaction (filelog: a
	// SegmentBytes of a few KiB).
	New func(t *testing.T) (open func(t *testing.T) eventlog.Log)
	// CoarseCompaction says the storage is set up with units of compaction
	// too large for the suite's records, so Compact may remove nothing;
	// the Compact test then checks only that it removes nothing it must
	// keep.
	CoarseCompaction bool
}

// waitTimeout bounds anything that should happen at once: long enough for
// -race on two busy cores, short enough that a hang fails quickly.
const waitTimeout = 30 * time.Second

type test struct {
	name string
	run  func(t *testing.T, b Backend, open func(t *testing.T) eventlog.Log)
}

// Run runs the conformance suite against b.
func Run(t *testing.T, b Backend) {
	tests := []test{
		{"Empty", testEmpty},
		{"AppendOne", testAppendOne},
		{"AppendMany", testAppendMany},
		{"ReadPagination", testReadPagination},
		{"Bodies", testBodies},
		{"DuplicateLaterCall", testDuplicateLaterCall},
		{"DuplicateInBatch", testDuplicateInBatch},
		{"ConcurrentAppenders", testConcurrentAppenders},
		{"Reopen", testReopen},
		{"Compact", testCompact},
		{"Invalid", testInvalid},
		{"ContextDone", testContextDone},
		{"Closed", testClosed},
		{"CloseDuringAppends", testCloseDuringAppends},
		{"Time", testTime},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			// Registered first, so it runs last: after the backend's cleanups.
			t.Cleanup(func() {
				if err := goleak.Find(ignore); err != nil {
					t.Errorf("goroutines left after the logs were closed: %v", err)
				}
			})
			tc.run(t, b, b.New(t))
		})
	}
}

// ctxFor returns a context ending after waitTimeout, cancelled at the test's end.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}
