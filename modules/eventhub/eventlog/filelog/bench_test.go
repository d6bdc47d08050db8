package filelog

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// BenchmarkAppend: concurrent appenders of one 200-byte entry per Append;
// reports events/s and fsyncs per event (group commit shares fsyncs).
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			body := make([]byte, 200)
			ctx := context.Background()
			var (
				next atomic.Int64
				wg   sync.WaitGroup
				errs = make(chan error, appenders)
			)
			b.ResetTimer()
			fsyncs := l.fsyncs.Load()
			for range appenders {
				wg.Go(func() {
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						if _, err := l.Append(ctx, []eventlog.Entry{{ID: strconv.FormatInt(i, 10), Body: body}}); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(l.fsyncs.Load()-fsyncs)/float64(b.N), "fsyncs/event")
		})
	}
}
