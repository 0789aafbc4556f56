package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointsd/pointsd/pgsql"
)

// clockCollector reports a pgsql.Clock's measurement at each scrape: no
// series before the first sync, when there is nothing to report.
type clockCollector struct {
	clock               *pgsql.Clock
	offset, uncertainty *prometheus.Desc
}

// RegisterClock adds pointsd_clock_offset_seconds (the database's clock
// less this replica's) and pointsd_clock_uncertainty_seconds (how far the
// true offset may be from it), read from clock at each scrape. Register
// the one clock the process decides on.
func (m *Metrics) RegisterClock(clock *pgsql.Clock) error {
	return m.Registry.Register(&clockCollector{
		clock: clock,
		offset: prometheus.NewDesc("pointsd_clock_offset_seconds",
			"The database server's clock less this replica's, as last measured; absent before the first measurement.", nil, nil),
		uncertainty: prometheus.NewDesc("pointsd_clock_uncertainty_seconds",
			"How far the true clock offset may be from pointsd_clock_offset_seconds: half the measuring round trip, plus drift since.", nil, nil),
	})
}

func (c *clockCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.offset
	ch <- c.uncertainty
}

func (c *clockCollector) Collect(ch chan<- prometheus.Metric) {
	offset, uncertainty, ok := c.clock.Offset()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.offset, prometheus.GaugeValue, offset.Seconds())
	ch <- prometheus.MustNewConstMetric(c.uncertainty, prometheus.GaugeValue, uncertainty.Seconds())
}
