package pglog

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zeroci/zeroci/internal/pgtest"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// BenchmarkAppend measures single-entry Appends of 200-byte bodies from 1,
// 16 and 64 concurrent appenders, reporting events/s and how many
// transactions group commit needed per event.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l := open(b, pgtest.Schema(b), Options{})
			ctx := ctxT(b)
			body := make([]byte, 200)
			var next atomic.Int64
			commits := l.commits.Load()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range appenders {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := l.Append(ctx, []eventlog.Entry{{ID: fmt.Sprint("e", i), Body: body}}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(l.commits.Load()-commits)/float64(b.N), "commits/event")
		})
	}
}
