package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pgtest"
)

// BenchmarkApply measures projecting build.triggered events, applied one
// per transaction or 100 per transaction; one op is one event.
func BenchmarkApply(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) Options
	}{
		{"sqlite", func(tb testing.TB) Options {
			return Options{Driver: DriverSQLite, DSN: filepath.Join(tb.TempDir(), "zeroci.db")}
		}},
		{"postgres", func(tb testing.TB) Options {
			return Options{Driver: DriverPostgres, DSN: pgtest.Schema(tb)}
		}},
	}
	for _, be := range backends {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", be.name, batch), func(b *testing.B) {
				f := newFixture(b, be.open)
				f.do(repoSubject("app"), contracts.RepoCreated{URL: "https://git.example/app", DefaultBranch: "main"})
				events := make([]contracts.Event, b.N)
				for i := range events {
					events[i] = f.ev(buildSubject("app", int64(i+1)), contracts.BuildTriggered{
						Ref: "main", Event: contracts.TriggerPush, User: "bench", Params: map[string]string{"N": fmt.Sprint(i)},
					})
				}
				ctx := context.Background()
				b.ResetTimer()
				for from := 0; from < len(events); from += batch {
					chunk := events[from:min(from+batch, len(events))]
					if n, err := f.st.Apply(ctx, chunk); err != nil || n != len(chunk) {
						b.Fatalf("Apply = %d, %v", n, err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
