package updater_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// connectAs opens a connection named name, closed when t ends.
func connectAs(t *testing.T, url, name string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = name
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// A leader that stops without dying (a paused process, a host cut off
// without a reset) keeps its session and the lock. Here a "ghost" leader
// holds the lock and a term, and a transaction of its updater holds a
// bucket's row lock, and then nothing: no lease renewal. A follower must
// evict it within the lease timeout, lead, and run cycles (the orphan's
// row lock gone with it); the ghost's late writes are fenced.
func TestStaleLeaderIsEvictedAndFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
	pool := pgtest.Pool(t, url)

	lock := connectAs(t, url, pgsql.SessionName(pgsql.LeaderSession, "ghost"))
	if ok, err := pgsql.TryLeaderLock(ctx, lock); err != nil || !ok {
		t.Fatalf("ghost takes the lock: %v, %v", ok, err)
	}
	ghostTerm, _, err := pgsql.TakeTerm(ctx, lock, "ghost")
	if err != nil {
		t.Fatal(err)
	}
	orphan := connectAs(t, url, pgsql.SessionName(pgsql.UpdaterSession, "ghost"))
	if _, err := orphan.Exec(ctx, `BEGIN; UPDATE buckets SET updated_at = now() WHERE bucket = 0`); err != nil {
		t.Fatal(err)
	}

	cfg := updater.Config{Period: 500 * time.Millisecond, LeaderPoll: 100 * time.Millisecond, LeaseTimeout: 500 * time.Millisecond, Instance: "next"}
	u, m := newUpdater(t, sessionPool(t, url, pgsql.SessionName(pgsql.UpdaterSession, "next"), updater.SessionLimits(cfg.Period)), cfg)
	start := time.Now()
	runInBackground(t, u)
	waitEvents(t, u, 5*time.Second, "the follower evicts the ghost", 1, kind(updater.EventEvicted))
	waitEvents(t, u, 5*time.Second, "the follower leads", 1, kind(updater.EventLeading))
	waitEvents(t, u, 5*time.Second, "a cycle finishes past the orphan's row lock", 1, kind(updater.EventCycleFinished))
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("a cycle finished %v after the follower started; want within a few lease timeouts", took)
	}
	if got := testutil.ToFloat64(m.LeaderEvictions); got != 1 {
		t.Errorf("pointsd_leader_evictions_total = %v, want 1", got)
	}
	for name, c := range map[string]*pgx.Conn{"lock": lock, "orphan": orphan} {
		if err := c.Ping(ctx); err == nil {
			t.Errorf("the ghost's %s session is still open", name)
		}
	}

	// The ghost wakes up and writes under its old term: nothing changes.
	st := readState(t, pool)
	late := pointsd.Cycle{Schedule: pointsd.Schedule{Cycle: st.Cycle + 100, Floor: 7, StartedAt: time.Now()}, Seed: 42, Mode: "rolling", Term: ghostTerm}
	if _, err := pgsql.StartCycle(ctx, pool, late); !errors.Is(err, pgsql.ErrDeposed) {
		t.Errorf("StartCycle under the old term: %v, want ErrDeposed", err)
	}
	late.Cycle = st.Cycle
	buckets, err := pgsql.Buckets(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, _, err := pgsql.DrawBucket(ctx, tx, pgsql.Bucket{Index: 0, Partition: buckets[0].Partition}, pointsd.Cycle{
			Schedule: pointsd.Schedule{Cycle: st.Cycle + 1}, Seed: 42, Term: ghostTerm})
		return err
	})
	if !errors.Is(err, pgsql.ErrDeposed) {
		t.Errorf("DrawBucket under the old term: %v, want ErrDeposed", err)
	}
	if err := pgsql.FinishCycle(ctx, pool, st.Cycle, ghostTerm, time.Second, 0); !errors.Is(err, pgsql.ErrDeposed) && err != nil {
		t.Errorf("FinishCycle under the old term: %v", err)
	}
	if _, err := pgsql.PublishNextStart(ctx, pool, st.Cycle, ghostTerm, time.Now().Add(time.Hour)); !errors.Is(err, pgsql.ErrDeposed) {
		t.Errorf("PublishNextStart under the old term: %v, want ErrDeposed", err)
	}
	var seed42 int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM buckets WHERE seed = 42`).Scan(&seed42); err != nil || seed42 != 0 {
		t.Errorf("%d buckets carry the ghost's seed (%v), want 0", seed42, err)
	}
	if n := pgtest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw", n)
	}
}

// A healthy leader renews its lease: a follower with a short lease
// timeout never evicts it.
func TestHealthyLeaderIsNotEvicted(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
	cfg := updater.Config{Period: 500 * time.Millisecond, LeaderPoll: 100 * time.Millisecond, LeaseTimeout: time.Second}
	replica := func(instance string) (*updater.Updater, *metrics.Metrics) {
		cfg := cfg
		cfg.Instance = instance
		return newUpdater(t, sessionPool(t, url, pgsql.SessionName(pgsql.UpdaterSession, instance), updater.SessionLimits(cfg.Period)), cfg)
	}
	a, am := replica("a")
	b, bm := replica("b")
	runInBackground(t, a)
	runInBackground(t, b)
	us := []*updater.Updater{a, b}
	waitAny(t, us, 5*time.Second, "a leader", 1, kind(updater.EventLeading))
	waitAny(t, us, 10*time.Second, "four cycles", 4, kind(updater.EventCycleFinished))
	if n := testutil.ToFloat64(am.LeaderEvictions) + testutil.ToFloat64(bm.LeaderEvictions); n != 0 {
		t.Errorf("%v evictions of a healthy leader", n)
	}
	if n := countEvents(us, kind(updater.EventLeading)); n != 1 {
		t.Errorf("leadership changed hands: %d leading events, want 1", n)
	}
	if n := countEvents(us, kind(updater.EventLeaseRenewed)); n < 5 {
		t.Errorf("%d lease renewals over four half-second cycles, want about one per 100 ms poll", n)
	}
}
