package pglog

import (
	"testing"

	"github.com/zeroci/zeroci/internal/pgtest"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/eventlogtest"
)

// TestConformance runs the eventlog suite: each subtest gets a fresh
// schema, and reopening opens a new Log on the same table.
func TestConformance(t *testing.T) {
	eventlogtest.Run(t, eventlogtest.Backend{
		New: func(t *testing.T) func(t *testing.T) eventlog.Log {
			dsn := pgtest.Schema(t)
			return func(t *testing.T) eventlog.Log { return open(t, dsn, Options{}) }
		},
	})
}
