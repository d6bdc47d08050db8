package datastore

import (
	"context"
	"fmt"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/datastore/store"
)

// ReadFunc returns stored events after since, oldest first; an empty
// result means there are no more.
type ReadFunc func(ctx context.Context, since int64) ([]contracts.Event, error)

// Rebuild empties the store's tables and applies the whole event log
// again, batch by batch; it returns how many events it read. Each batch
// commits with its last sequence, so a rebuild cut short resumes like a
// data store that was behind. The data store module must not be running
// on the same database (see Own).
func Rebuild(ctx context.Context, st *store.Store, read ReadFunc) (int64, error) {
	if err := st.Reset(ctx); err != nil {
		return 0, fmt.Errorf("datastore: rebuild: %w", err)
	}
	var since, n int64
	for {
		events, err := read(ctx, since)
		if err != nil {
			return n, fmt.Errorf("datastore: rebuild: reading events after %d: %w", since, err)
		}
		if len(events) == 0 {
			return n, nil
		}
		if _, err := st.Apply(ctx, events); err != nil {
			return n, fmt.Errorf("datastore: rebuild: %w", err)
		}
		n += int64(len(events))
		since = events[len(events)-1].Seq
	}
}
