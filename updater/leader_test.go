package updater_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// Two replicas on one database: exactly one leads and runs cycles; when its
// connection is killed, leadership is retaken well within 15 s (by the old
// leader, which campaigns again at once, or by the other) and the cycles go
// on.
func TestOneLeaderAndFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
	pool := pgtest.Pool(t, url)
	cfg := updater.Config{Period: 500 * time.Millisecond, LeaderPoll: 200 * time.Millisecond}
	a, am := newUpdater(t, pgtest.Pool(t, url), cfg)
	b, bm := newUpdater(t, pgtest.Pool(t, url), cfg)
	runInBackground(t, a)
	runInBackground(t, b)

	leaders := func() (n int, leader *updater.Updater) {
		for _, u := range []*updater.Updater{a, b} {
			if u.Status().Leader {
				n++
				leader = u
			}
		}
		return n, leader
	}
	waitAny(t, []*updater.Updater{a, b}, 5*time.Second, "a leader", 1, kind(updater.EventLeading))
	// For a while, never two, and cycles advance.
	first := readState(t, pool).Cycle
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n, _ := leaders(); n != 1 {
			t.Fatalf("%d leaders, want exactly 1", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := readState(t, pool).Cycle; c < first+2 {
		t.Fatalf("cycle went from %d to %d in 1.5s of 500ms periods", first, c)
	}
	if testutil.ToFloat64(am.Leader)+testutil.ToFloat64(bm.Leader) != 1 {
		t.Fatal("pointsd_leader gauges disagree with the statuses")
	}

	pid, err := pgsql.LeaderPID(ctx, pool)
	if err != nil || pid == 0 {
		t.Fatalf("leader pid %d, %v", pid, err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_, old := leaders()
	waitEvents(t, old, 15*time.Second, "the leader notices it lost its session", 1, kind(updater.EventFollowing))
	waitAny(t, []*updater.Updater{a, b}, 15*time.Second, "a new leader", 2, kind(updater.EventLeading))
	t.Logf("failover took %v", time.Since(killed))
	if now, err := pgsql.LeaderPID(ctx, pool); err != nil || now == 0 || now == pid {
		t.Fatalf("leader pid %d after the failover (was %d), %v", now, pid, err)
	}
	if testutil.ToFloat64(am.Leader)+testutil.ToFloat64(bm.Leader) != 1 {
		t.Fatal("pointsd_leader gauges did not follow the failover")
	}
	both := []*updater.Updater{a, b}
	before := countEvents(both, kind(updater.EventCycleFinished))
	waitAny(t, both, 5*time.Second, "cycles continue under the new leader", before+2, kind(updater.EventCycleFinished))
}

// The leader stopping (SIGTERM, crash) hands over just the same.
func TestFollowerTakesOverWhenLeaderStops(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
	cfg := updater.Config{Period: time.Second, LeaderPoll: 200 * time.Millisecond}
	a, _ := newUpdater(t, pgtest.Pool(t, url), cfg)
	stopA := runInBackground(t, a)
	waitEvents(t, a, 5*time.Second, "a leads", 1, kind(updater.EventLeading))
	b, _ := newUpdater(t, pgtest.Pool(t, url), cfg)
	runInBackground(t, b)
	time.Sleep(3 * cfg.LeaderPoll) // b has tried, and failed, to lead
	if b.Status().Leader {
		t.Fatal("b leads while a does")
	}
	if took := stopA(); took > 5*time.Second {
		t.Errorf("stopping the leader took %v, want under 5s", took)
	}
	waitEvents(t, b, 15*time.Second, "b takes over", 1, kind(updater.EventLeading))
}
