package metrics

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// poolCollector reports a connection pool's statistics, read from
// pgxpool's Stat at each scrape, under Prometheus's conventions (base
// units, _total on counters), which the pgxpool_* names of the usual
// collector break: promtool check metrics must pass on /metrics.
type poolCollector struct {
	pool  *pgxpool.Pool
	descs map[string]*prometheus.Desc
	stats []poolStat
}

// poolStat is one series: its name, help, type and how to read it.
type poolStat struct {
	name, help string
	kind       prometheus.ValueType
	value      func(*pgxpool.Stat) float64
}

var poolStats = []poolStat{
	{"pointsd_pool_max_connections", "The pool's maximum number of connections.", prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }},
	{"pointsd_pool_total_connections", "Connections open or being opened.", prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }},
	{"pointsd_pool_acquired_connections", "Connections in use.", prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }},
	{"pointsd_pool_idle_connections", "Connections idle in the pool.", prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }},
	{"pointsd_pool_constructing_connections", "Connections being opened.", prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.ConstructingConns()) }},
	{"pointsd_pool_acquires_total", "Connections acquired from the pool.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }},
	{"pointsd_pool_acquire_wait_seconds_total", "Time spent acquiring connections.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }},
	{"pointsd_pool_empty_acquires_total", "Acquires that had to wait for a connection: none was idle.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }},
	{"pointsd_pool_empty_acquire_wait_seconds_total", "Time spent waiting by acquires that found no idle connection.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return s.EmptyAcquireWaitTime().Seconds() }},
	{"pointsd_pool_canceled_acquires_total", "Acquires canceled by their context.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.CanceledAcquireCount()) }},
	{"pointsd_pool_new_connections_total", "Connections opened.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.NewConnsCount()) }},
	{"pointsd_pool_max_lifetime_destroys_total", "Connections closed for reaching their maximum lifetime.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.MaxLifetimeDestroyCount()) }},
	{"pointsd_pool_max_idle_destroys_total", "Connections closed for idling too long.", prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.MaxIdleDestroyCount()) }},
}

func newPoolCollector(name string, pool *pgxpool.Pool) *poolCollector {
	c := &poolCollector{pool: pool, descs: map[string]*prometheus.Desc{}, stats: poolStats}
	for _, s := range poolStats {
		c.descs[s.name] = prometheus.NewDesc(s.name, s.help, nil, prometheus.Labels{"pool": name})
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	for _, s := range c.stats {
		ch <- prometheus.MustNewConstMetric(c.descs[s.name], s.kind, s.value(st))
	}
}
