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
	if err := pgsql.FinishCycle(ctx, pool, st.Cycle, ghostTerm, time.Second, 0); !errors.Is(err, pgsql.ErrDeposed) {
		t.Errorf("FinishCycle under the old term: %v, want ErrDeposed", err)
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

// The term fence is a lock, not only a read: a new term waits for a write
// that passed the fence under the old one, so the old leader's commit lands
// before the new term exists, never after it. The old leader's lease
// renewal does not wait on its own writes.
func TestNewTermWaitsForTheOldTermsWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
	pool := pgtest.Pool(t, url)
	old := connectAs(t, url, pgsql.SessionName(pgsql.LeaderSession, "old"))
	oldTerm, _, err := pgsql.TakeTerm(ctx, old, "old")
	if err != nil {
		t.Fatal(err)
	}
	c := pointsd.Cycle{Schedule: pointsd.Schedule{Cycle: readState(t, pool).Cycle + 1, Floor: 50, StartedAt: time.Now()}, Seed: 7, Mode: "rolling", Term: oldTerm}
	if started, err := pgsql.StartCycle(ctx, pool, c); err != nil || !started {
		t.Fatalf("start cycle %d: %v, %v", c.Cycle, started, err)
	}
	buckets, err := pgsql.Buckets(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}

	// A write of the old term, inside the fence, not yet committed. Its
	// session is not named after the old holder: TakeTerm cannot end it.
	writer := connectAs(t, url, "a write in flight")
	tx, err := writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, claimed, err := pgsql.DrawBucket(ctx, tx, buckets[0], c); err != nil || !claimed {
		t.Fatalf("draw bucket 0 under the old term: %v, %v", claimed, err)
	}
	renewCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ok, err := pgsql.RenewLease(renewCtx, old, oldTerm); err != nil || !ok {
		t.Errorf("the old leader renews its lease beside its own write: %v, %v", ok, err)
	}

	next := connectAs(t, url, pgsql.SessionName(pgsql.LeaderSession, "new"))
	nextPID := next.PgConn().PID()
	taken := make(chan error, 1)
	var newTerm int64
	go func() {
		var err error
		newTerm, _, err = pgsql.TakeTerm(ctx, next, "new")
		taken <- err
	}()
	pgtest.Eventually(t, 5*time.Second, "the new term waits on the lease row", func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, nextPID).Scan(&waiting)
		return err == nil && waiting
	})
	select {
	case err := <-taken:
		t.Fatalf("a new term was taken while the old term's write was in flight (%v)", err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the old term's write commits: %v", err)
	}
	select {
	case err := <-taken:
		if err != nil || newTerm != oldTerm+1 {
			t.Fatalf("take the new term: %d, %v; want %d", newTerm, err, oldTerm+1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the new term was not taken within 5 s of the old write's commit")
	}

	// From now on the old term writes nothing.
	tx2, err := writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback(ctx) }()
	if _, _, err := pgsql.DrawBucket(ctx, tx2, buckets[1], c); !errors.Is(err, pgsql.ErrDeposed) {
		t.Errorf("draw bucket 1 under the old term after the new one: %v, want ErrDeposed", err)
	}
	var drawn int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM buckets WHERE cycle = $1`, c.Cycle).Scan(&drawn); err != nil || drawn != 1 {
		t.Errorf("%d buckets at cycle %d (%v), want 1: the write before the new term", drawn, c.Cycle, err)
	}
}
