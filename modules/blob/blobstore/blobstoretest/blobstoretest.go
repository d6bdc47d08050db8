// Package blobstoretest is the conformance suite every blobstore.Backend
// runs (like transporttest for transports): a backend's test calls Run with
// a function that makes a fresh, empty backend for one subtest.
//
//	func TestConformance(t *testing.T) {
//		blobstoretest.Run(t, func(t *testing.T) blobstoretest.Subject {
//			return blobstoretest.Subject{Backend: newStore(t)}
//		})
//	}
//
// Each subtest gets its own backend and checks at the end, after the
// backend's cleanups ran, that no goroutine was leaked. Subtests run one
// after the other. The large blobs are a few MiB: a backend that switches
// to multipart uploads should be set up to do so below that (ocistore: a
// PartSize of 1 MiB).
package blobstoretest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/modules/blob/blobstore"
)

// Subject is a backend under test with optional hooks into its storage.
type Subject struct {
	// Backend is fresh and empty. Its resources must be released by
	// cleanups the constructor registers (t.Cleanup).
	Backend blobstore.Backend
	// Corrupt changes stored content of key without changing its stored
	// size or digest (a flipped byte), so the whole-read check can be
	// tested. Nil skips that test.
	Corrupt func(key string) error
	// Leftovers lists the staging state a failed or cancelled Put must not
	// leave behind (temporary files, multipart uploads in progress). Nil
	// skips those checks.
	Leftovers func() ([]string, error)
}

// waitTimeout bounds every backend call of a subtest: long enough for -race
// on two busy cores, short enough that a hang fails quickly.
const waitTimeout = 60 * time.Second

type test struct {
	name string
	run  func(t *testing.T, s Subject)
}

// Run runs the conformance suite; newSubject is called once per subtest.
func Run(t *testing.T, newSubject func(t *testing.T) Subject) {
	tests := []test{
		{"RoundTrip", testRoundTrip},
		{"Info", testInfo},
		{"Ranges", testRanges},
		{"WholeReadChecksum", testWholeReadChecksum},
		{"WrongChecksum", testWrongChecksum},
		{"WrongSize", testWrongSize},
		{"BadOptions", testBadOptions},
		{"CancelledPut", testCancelledPut},
		{"ReaderError", testReaderError},
		{"Overwrite", testOverwrite},
		{"ConcurrentWriters", testConcurrentWriters},
		{"List", testList},
		{"ListInfo", testListInfo},
		{"ListInvalid", testListInvalid},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"Missing", testMissing},
		{"Keys", testKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			// Registered first, so it runs last: after the backend's cleanups.
			t.Cleanup(func() {
				if err := goleak.Find(ignore); err != nil {
					t.Errorf("goroutines left after the backend's cleanups: %v", err)
				}
			})
			s := newSubject(t)
			if s.Backend == nil {
				t.Fatal("newSubject returned no Backend")
			}
			tc.run(t, s)
		})
	}
}

// ctxFor returns a context ending after waitTimeout, cancelled at the
// test's end.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}
