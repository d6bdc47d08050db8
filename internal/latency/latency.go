// Package latency summarises latency samples for the benchmarks.
package latency

import (
	"slices"
	"time"
)

// PercentileMs returns the p-quantile (0 < p ≤ 1, nearest rank) of ds in
// milliseconds, 0 when ds is empty. ds is not modified.
func PercentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}
