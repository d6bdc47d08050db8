package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zeroci/zeroci/transport"
)

// newRegistry is the process's /metrics: Go runtime and process figures,
// and the transport's counters; the api module adds its own.
func newRegistry(tr transport.Transport) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	// SPEC §5: every metric name starts with zeroci_, the runtime's too.
	prometheus.WrapRegistererWithPrefix("zeroci_", reg).MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, get func(transport.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "zeroci_transport_" + name, Help: help},
			func() float64 { return float64(get(tr.Stats())) })
	}
	reg.MustRegister(
		counter("published_total", "Messages this process published.", func(s transport.Stats) uint64 { return s.Published }),
		counter("delivered_total", "Messages delivered to this process's subscriptions.", func(s transport.Stats) uint64 { return s.Delivered }),
		counter("dropped_total", "Messages dropped by this process's full subscription queues.", func(s transport.Stats) uint64 { return s.Dropped }),
		counter("requests_total", "Requests this process sent.", func(s transport.Stats) uint64 { return s.Requests }),
		counter("served_total", "Requests this process's handlers answered.", func(s transport.Stats) uint64 { return s.Served }),
		counter("auth_failures_total", "Inbound messages dropped for a bad or missing signature.", func(s transport.Stats) uint64 { return s.AuthFailures }),
		counter("replayed_total", "Inbound messages dropped as replayed or stale.", func(s transport.Stats) uint64 { return s.Replayed }),
		counter("malformed_total", "Inbound messages dropped as undecodable.", func(s transport.Stats) uint64 { return s.Malformed }),
	)
	return reg
}
