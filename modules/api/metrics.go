package api

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/hubclient"
	"github.com/zeroci/zeroci/modules/rpc"
)

// metrics are the api's Prometheus collectors. Build and job figures are
// counted from the event stream since this process started (each replica
// counts every event; aggregate with max, not sum); queue depth and runners
// are asked of the scheduler at scrape time.
type metrics struct {
	buildsTriggered prometheus.Counter
	buildsFinished  *prometheus.CounterVec
	jobDuration     *prometheus.HistogramVec
	logBytes        prometheus.Counter
	authFailures    prometheus.Counter
	webhooks        *prometheus.CounterVec
	sched           *schedCollector
}

func newMetrics() *metrics {
	return &metrics{
		buildsTriggered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zeroci_builds_triggered_total", Help: "Builds triggered, from build.triggered events.",
		}),
		buildsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zeroci_builds_finished_total", Help: "Builds finished, by final status, from build.finished events.",
		}, []string{"status"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zeroci_job_duration_seconds", Help: "Durations of finished job attempts, by status.",
			Buckets: prometheus.ExponentialBuckets(0.05, 3, 12),
		}, []string{"status"}),
		logBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zeroci_log_bytes_total", Help: "Bytes of job logs ingested, from log.closed events.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zeroci_api_auth_failures_total", Help: "API requests refused for an unknown token.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zeroci_webhooks_total", Help: "Webhook deliveries, by result (triggered, duplicate, ignored, bad_signature, invalid).",
		}, []string{"result"}),
		sched: &schedCollector{
			queued:  prometheus.NewDesc("zeroci_queue_depth", "Jobs waiting for a runner.", nil, nil),
			running: prometheus.NewDesc("zeroci_jobs_running", "Jobs running under a lease.", nil, nil),
			runners: prometheus.NewDesc("zeroci_runners_connected", "Runners heard from within the lease time.", nil, nil),
			builds:  prometheus.NewDesc("zeroci_builds_active", "Builds not yet finished.", nil, nil),
		},
	}
}

// Collectors are the api's metrics, for the process's /metrics.
func (a *API) Collectors() []prometheus.Collector {
	a.metrics.sched.a = a
	m := a.metrics
	return []prometheus.Collector{m.buildsTriggered, m.buildsFinished, m.jobDuration, m.logBytes, m.authFailures, m.webhooks, m.sched}
}

// schedCollector asks the scheduler for its figures at scrape time.
type schedCollector struct {
	a                                *API
	queued, running, runners, builds *prometheus.Desc
}

func (c *schedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queued
	ch <- c.running
	ch <- c.runners
	ch <- c.builds
}

func (c *schedCollector) Collect(ch chan<- prometheus.Metric) {
	if c.a == nil || c.a.tr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := rpc.Call[contracts.Stats](ctx, c.a.tr, contracts.GetStats{})
	if err != nil {
		return // the scheduler is away: no figures rather than wrong ones
	}
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(st.Running))
	ch <- prometheus.MustNewConstMetric(c.runners, prometheus.GaugeValue, float64(st.Runners))
	ch <- prometheus.MustNewConstMetric(c.builds, prometheus.GaugeValue, float64(st.Builds))
}

// followEvents counts builds, jobs and log bytes from the hub, from its
// head at start on.
func (a *API) followEvents() {
	defer a.wg.Done()
	var head int64
	for a.ctx.Err() == nil {
		batch, err := hubclient.Read(a.ctx, a.tr, contracts.ReadEvents{Limit: 1})
		if err == nil {
			head = batch.Head
			break
		}
		sleepCtx(a.ctx, time.Second)
	}
	for a.ctx.Err() == nil {
		err := hubclient.Follow(a.ctx, a.tr, head, func(ev contracts.Event) error {
			head = ev.Seq
			a.count(ev)
			return nil
		})
		if a.ctx.Err() == nil {
			a.log.Warn().Err(err).Msg("following the hub for metrics")
			sleepCtx(a.ctx, time.Second)
		}
	}
}

func (a *API) count(ev contracts.Event) {
	m := a.metrics
	switch ev.Type {
	case contracts.TypeBuildTriggered:
		m.buildsTriggered.Inc()
	case contracts.TypeBuildFinished, contracts.TypeJobFinished, contracts.TypeLogClosed:
		msg, err := ev.DecodePayload()
		if err != nil {
			return
		}
		switch p := msg.(type) {
		case contracts.BuildFinished:
			m.buildsFinished.WithLabelValues(string(p.Status)).Inc()
		case contracts.JobFinished:
			if p.Attempt > 0 {
				m.jobDuration.WithLabelValues(string(p.Status)).Observe(float64(p.DurationMs) / 1000)
			}
		case contracts.LogClosed:
			m.logBytes.Add(float64(p.Bytes))
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
