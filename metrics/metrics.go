// Package metrics owns pointsd's Prometheus registry and every collector in
// it. Nothing registers globally: the registry is built here and passed to
// whoever records or serves metrics.
package metrics

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pointsd/pointsd/pgsql"
)

// Metrics are pointsd's instruments and the registry holding them.
type Metrics struct {
	Registry *prometheus.Registry

	// CycleDuration times whole cycles by mode: a strict cycle over 1M users
	// takes 1–10 s; a rolling one spans most of its period.
	CycleDuration *prometheus.HistogramVec
	// CycleWork is the update work of a cycle, by mode: the strict
	// transaction, or the sum of a rolling cycle's bucket transactions,
	// whose span is paced across the period.
	CycleWork *prometheus.HistogramVec
	// LastCycleSuccess is when this replica last finished a cycle (Unix
	// seconds; 0 if never): with CyclePeriod, an alert can tell a stalled
	// updater. Only the leader finishes cycles: take the max over replicas.
	LastCycleSuccess prometheus.Gauge
	// ClusterMode is 1 for the cluster's mode as this replica last read it.
	ClusterMode *prometheus.GaugeVec
	// CyclePeriod is this replica's configured period.
	CyclePeriod prometheus.Gauge
	// BucketDuration times one bucket's transaction: about 10–100 ms for a
	// sixtieth of 1M users.
	BucketDuration prometheus.Histogram
	RowsUpdated    prometheus.Counter
	CycleOverruns  prometheus.Counter
	// CycleLateStarts counts cycles started after their boundary, on it:
	// after an overrun by less than half a period, or a leader taking over
	// late. CyclesSkipped counts boundaries that passed without a cycle.
	CycleLateStarts prometheus.Counter
	CyclesSkipped   prometheus.Counter
	// CycleSpread is the part of the period the leader's current rolling
	// cycle spreads its slots over (see partition.Slots).
	CycleSpread  prometheus.Gauge
	UpdateErrors prometheus.Counter
	Leader       prometheus.Gauge
	// Floor is the floor this replica last saw. httpapi alone writes it:
	// the cache's reads and its updater's commits go through one method.
	Floor prometheus.Gauge
	// LeaderEligible is 0 while this replica cannot do the leader's work
	// (a role that may only read, a standby) and so does not campaign.
	LeaderEligible prometheus.Gauge
	// LeaderEvictions counts the stale leaders this replica evicted: a
	// leader that held the lock but stopped renewing its lease.
	LeaderEvictions prometheus.Counter
	// StateProblems counts, by check, the damage the last check found in
	// the database (see pgsql.CheckState): anything but 0 needs an operator.
	// httpapi alone writes it, from /readyz's checks and the leader's.
	StateProblems *prometheus.GaugeVec
	// DatabaseErrors counts, by kind (pgsql.AllOutOfResources), the errors
	// that said the database ran out of disk, memory or a configured limit,
	// met by a cycle or a query.
	DatabaseErrors *prometheus.CounterVec

	// HTTPDuration times requests by chi route pattern, method and status.
	HTTPDuration *prometheus.HistogramVec

	// The cache's clock and listener (issue 17). The clock's offset is
	// registered with RegisterClock (see clock.go).
	//
	// ListenerUp is 1 while the change listener is proven alive: a
	// heartbeat it NOTIFYs itself came back within the deadline.
	ListenerUp prometheus.Gauge

	// The previous-query time's exchange between replicas (issue 20):
	// writes to query_times, at most one per 100 ms while a replica is
	// queried, none while it is not.
	QueryTimePublishes     prometheus.Counter
	QueryTimePublishErrors prometheus.Counter
}

// New builds the registry with pointsd's instruments and the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		CycleDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pointsd_cycle_duration_seconds",
			Help:    "Time from a cycle's start to its last commit, by mode.",
			Buckets: []float64{0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120},
		}, []string{"mode"}),
		CycleWork: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pointsd_cycle_work_seconds",
			Help:    "Update work of a cycle by mode: the strict transaction, or the sum of a rolling cycle's bucket transactions.",
			Buckets: []float64{0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120},
		}, []string{"mode"}),
		LastCycleSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pointsd_last_cycle_success_timestamp_seconds",
			Help: "When this replica last finished a cycle, in Unix seconds; 0 if it never did (only the leader runs cycles).",
		}),
		ClusterMode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pointsd_cluster_mode",
			Help: "1 for the mode the cluster runs its next cycles in (set by pointsd mode), 0 for the other.",
		}, []string{"mode"}),
		CyclePeriod: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pointsd_cycle_period_seconds",
			Help: "The period between cycle starts this replica runs with when it leads.",
		}),
		BucketDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pointsd_bucket_update_duration_seconds",
			Help:    "Time of one rolling bucket's transaction, retries excluded.",
			Buckets: []float64{0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5},
		}),
		RowsUpdated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pointsd_rows_updated_total",
			Help: "Users whose points were re-drawn and committed.",
		}),
		CycleOverruns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pointsd_cycle_overruns_total",
			Help: "Cycles that ran past their period.",
		}),
		CycleLateStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pointsd_cycle_late_starts_total",
			Help: "Cycles started after their boundary (after a small overrun, or a late leader), on the slots of that boundary.",
		}),
		CyclesSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pointsd_cycle_boundaries_skipped_total",
			Help: "Period boundaries that passed without a cycle (an overrun past half a period, or no leader), counted by the next leader's cycle.",
		}),
		CycleSpread: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pointsd_cycle_spread_seconds",
			Help: "The part of the period the leader spreads its rolling slots over; the rest is kept for the last buckets' work. 0 on followers.",
		}),
		UpdateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pointsd_update_errors_total",
			Help: "Failed update transactions (each retry that fails counts).",
		}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pointsd_leader",
			Help: "1 while this replica is the leader running the updater, else 0.",
		}),
		Floor: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pointsd_qualifying_floor",
			Help: "The qualifying floor this replica last saw: queries return points above it.",
		}),
		LeaderEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pointsd_leader_evictions_total",
			Help: "Leaders this replica evicted because they held the leader lock but stopped renewing their lease (paused, or cut off).",
		}),
		LeaderEligible: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pointsd_leader_eligible",
			Help: "1 while this replica can do the leader's work and campaigns for it, 0 while it cannot (see /status).",
		}),
		StateProblems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pointsd_state_problems",
			Help: "Damage found in the database by the last check, by check (see /readyz); pointsd migrate repairs it.",
		}, []string{"check"}),
		DatabaseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pointsd_database_errors_total",
			Help: "Errors that said the database is out of a resource (SQLSTATE class 53 but too many connections), by kind, met by a cycle or a query.",
		}, []string{"kind"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pointsd_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern, method and status code.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"route", "method", "code"}),
	}
	m.Registry.MustRegister(
		m.CycleDuration, m.CycleWork, m.LastCycleSuccess, m.ClusterMode, m.CyclePeriod, m.BucketDuration, m.RowsUpdated, m.CycleOverruns,
		m.CycleLateStarts, m.CyclesSkipped, m.CycleSpread, m.UpdateErrors, m.Leader, m.Floor, m.LeaderEligible, m.LeaderEvictions, m.StateProblems, m.DatabaseErrors, m.HTTPDuration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	// The cache's clock and listener (issue 17).
	m.ListenerUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pointsd_listener_up",
		Help: "1 while this replica's change listener is proven alive (its heartbeat NOTIFY came back in time), else 0: answers are then reused only briefly.",
	})
	m.Registry.MustRegister(m.ListenerUp)

	// The previous-query time's exchange (issue 20).
	m.QueryTimePublishes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pointsd_query_time_publishes_total",
		Help: "Writes of this replica's latest query time to the cluster (at most one per 100 ms while queried, none while idle).",
	})
	m.QueryTimePublishErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pointsd_query_time_publish_errors_total",
		Help: "Writes of this replica's latest query time that failed (the database unreachable, or a role that may not write query_times).",
	})
	m.Registry.MustRegister(m.QueryTimePublishes, m.QueryTimePublishErrors)
	m.LeaderEligible.Set(1)
	for _, c := range pgsql.AllChecks {
		m.StateProblems.WithLabelValues(c)
	}
	for _, k := range pgsql.AllOutOfResources {
		m.DatabaseErrors.WithLabelValues(k)
	}
	return m
}

// RegisterBuildInfo adds pointsd_build_info{version,revision,goversion} 1,
// so that dashboards can tell which build each replica runs.
func (m *Metrics) RegisterBuildInfo(version, revision, goVersion string) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "pointsd_build_info",
		Help:        "Always 1; the labels say which build of pointsd this replica runs.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	})
	g.Set(1)
	return m.Registry.Register(g)
}

// SetProblems records the findings of a state check.
func (m *Metrics) SetProblems(problems []pgsql.Problem) {
	n := map[string]int{}
	for _, p := range problems {
		n[p.Check]++
	}
	for _, c := range pgsql.AllChecks {
		m.StateProblems.WithLabelValues(c).Set(float64(n[c]))
	}
}

// CountDatabaseError counts err if it says the database ran out of a
// resource (see pgsql.OutOfResources), and returns the one line that names
// it ("" if err does not).
func (m *Metrics) CountDatabaseError(err error) string {
	kind := pgsql.OutOfResources(err)
	if kind == "" {
		return ""
	}
	m.DatabaseErrors.WithLabelValues(kind).Inc()
	return pgsql.DescribeOutOfResources(err)
}

// RegisterPool adds a connection pool's statistics (pointsd_pool_*),
// labelled with the pool's name: pointsd keeps the query pool and the
// updater's pool apart so neither can starve the other, and shows both.
func (m *Metrics) RegisterPool(name string, pool *pgxpool.Pool) error {
	return m.Registry.Register(newPoolCollector(name, pool))
}
