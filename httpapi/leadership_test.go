package httpapi

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
)

// What the updater tells the API, as its Listener, shows in /status,
// /readyz and the gauges the API owns: its leadership, the floor of its
// commits and the damage it found.
func TestListenerNewsShow(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 100})
	m := metrics.New()
	a, srv := newAPI(t, url, Config{Metrics: m, NoCache: true})
	if _, body := get(t, srv.URL+"/status"); body["leader"] != false || body["leader_problem"] != nil {
		t.Fatalf("/status before the updater said anything: %v; want not leading, no problem", body)
	}

	a.LeaderChanged(true, "")
	if _, body := get(t, srv.URL+"/status"); body["leader"] != true || body["leader_problem"] != nil {
		t.Errorf("/status of a leader: %v; want leading, no problem", body)
	}
	const why = "may not UPDATE users"
	a.LeaderChanged(false, why)
	if _, body := get(t, srv.URL+"/status"); body["leader"] != false || body["leader_problem"] != why {
		t.Errorf("/status of a replica that cannot lead: %v; want not leading, %q", body, why)
	}
	if _, body := get(t, srv.URL+"/readyz"); body["status"] != "ready" || body["leader_problem"] != why {
		t.Errorf("/readyz of a replica that cannot lead: %v; want ready, %q", body, why)
	}

	a.Committed(pgsql.AllBuckets, 73)
	if got := testutil.ToFloat64(m.Floor); got != 73 {
		t.Errorf("pointsd_qualifying_floor after a commit of floor 73: %v", got)
	}
	a.Checked([]pgsql.Problem{{Check: pgsql.CheckPartitions, Detail: "users_p1 is gone"}})
	if got := testutil.ToFloat64(m.StateProblems.WithLabelValues(pgsql.CheckPartitions)); got != 1 {
		t.Errorf("pointsd_state_problems{check=partitions} after the leader found one: %v, want 1", got)
	}
	a.Checked(nil)
	if got := testutil.ToFloat64(m.StateProblems.WithLabelValues(pgsql.CheckPartitions)); got != 0 {
		t.Errorf("pointsd_state_problems{check=partitions} after a clean check: %v, want 0", got)
	}
}
