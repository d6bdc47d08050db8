package latency

import (
	"testing"
	"time"
)

func TestPercentileMs(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	samples := ms(5, 1, 4, 2, 3, 10, 9, 8, 7, 6) // unsorted, 1..10
	for _, tc := range []struct {
		p    float64
		want float64
	}{{0.5, 5}, {0.9, 9}, {0.99, 10}, {1, 10}, {0.01, 1}} {
		if got := PercentileMs(samples, tc.p); got != tc.want {
			t.Errorf("p%v = %v ms, want %v", tc.p, got, tc.want)
		}
	}
	if samples[0] != 5*time.Millisecond {
		t.Error("the samples were reordered")
	}
	if got := PercentileMs(nil, 0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
}
