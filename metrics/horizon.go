package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointsd/pointsd/pgsql"
)

// horizonTimeout bounds the database read of a scrape: a database that
// does not answer leaves the gauge out of that scrape instead of holding
// it up.
const horizonTimeout = time.Second

// horizonCollector reports pointsd_oldest_snapshot_age_seconds, read from
// the database at each scrape (see pgsql.ReadHorizon), so that it is as
// fresh on every replica as the scrape is, whoever leads.
type horizonCollector struct {
	db  pgsql.DBTX
	age *prometheus.Desc
}

// RegisterHorizon adds pointsd_oldest_snapshot_age_seconds: how long the
// oldest snapshot a session or prepared transaction holds in db's
// database has been held, 0 if none is. An old one stops HOT pruning and
// the users table grows every cycle.
func (m *Metrics) RegisterHorizon(db pgsql.DBTX) error {
	return m.Registry.Register(&horizonCollector{db: db, age: prometheus.NewDesc(
		"pointsd_oldest_snapshot_age_seconds",
		"Age of the oldest snapshot a session or prepared transaction holds in pointsd's database (0 if none), read at each scrape; past a minute, see /status oldest_snapshot.",
		nil, nil)})
}

func (c *horizonCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.age }

func (c *horizonCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), horizonTimeout)
	defer cancel()
	horizon, err := pgsql.ReadHorizon(ctx, c.db)
	if err != nil {
		return // unknown this scrape: the database's own errors show elsewhere
	}
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, horizon.OldestAge().Seconds())
}
