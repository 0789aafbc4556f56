package updater_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// A replica whose role may only read never takes the leader lock, says
// why, and the replica that can write leads.
func TestReadOnlyReplicaNeverLeads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
	pool := pgtest.Pool(t, url)
	role := fmt.Sprintf("reader_%d", time.Now().UnixNano())
	if _, err := pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(ctx, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	cfg := updater.Config{Period: 300 * time.Millisecond}
	reader, rm := newUpdater(t, poolAs(t, url, func(c *pgxpool.Config) { c.ConnConfig.User = role }), cfg)
	runInBackground(t, reader)
	waitEvents(t, reader, 5*time.Second, "the reader finds it cannot lead", 1, kind(updater.EventCannotLead))
	if p := reader.Status().Problem; !strings.Contains(p, "may not UPDATE") || testutil.ToFloat64(rm.LeaderEligible) != 0 {
		t.Errorf("the reader's problem %q, pointsd_leader_eligible %v; want why, and 0", p, testutil.ToFloat64(rm.LeaderEligible))
	}

	writer, _ := newUpdater(t, pool, cfg)
	runInBackground(t, writer)
	waitEvents(t, writer, 5*time.Second, "the writer runs two cycles", 2, kind(updater.EventCycleFinished))
	waitEvents(t, writer, 0, "the writer leads", 1, kind(updater.EventLeading))
	if reader.Status().Leader {
		t.Error("the read-only replica leads")
	}
}

// A leader whose cycles keep failing for a reason of its own steps down,
// and a healthy replica takes over.
func TestLeaderThatKeepsFailingStepsDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 100})
	pool := pgtest.Pool(t, url)
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse_broken() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_setting('application_name') = 'broken' THEN RAISE EXCEPTION 'broken replica'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_broken BEFORE UPDATE ON cycle_state FOR EACH ROW EXECUTE FUNCTION refuse_broken();`); err != nil {
		t.Fatal(err)
	}
	cfg := updater.Config{Period: 200 * time.Millisecond, LeaderPoll: 50 * time.Millisecond}
	var logs pgtest.SyncBuffer
	bcfg := cfg
	bcfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	broken, _ := newUpdater(t, poolAs(t, url, func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["application_name"] = "broken"
	}), bcfg)
	runInBackground(t, broken)
	waitEvents(t, broken, 5*time.Second, "the broken replica leads", 1, kind(updater.EventLeading))

	healthy, _ := newUpdater(t, pool, cfg)
	runInBackground(t, healthy)
	waitEvents(t, broken, 10*time.Second, "the broken replica steps down", 1, kind(updater.EventFollowing))
	waitEvents(t, healthy, 10*time.Second, "the healthy replica runs two cycles", 2, kind(updater.EventCycleFinished))
	if !strings.Contains(logs.String(), `msg="stepped down so that another replica can lead"`) {
		t.Errorf("the broken replica did not say it stepped down:\n%s", logs.String())
	}
}

// The leader loses its connection mid-cycle and cannot lead again until the
// next boundary has passed (an outage): when it returns, it finishes the
// cut cycle, then starts the cycle that boundary was due, late, on the
// schedule: no cycle is left unfinished and no period goes without one.
func TestCycleCutAcrossABoundaryIsResumed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const period = 2 * time.Second
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 8, Users: 16_000})
	pool := pgtest.Pool(t, url)
	u, m := newUpdater(t, pgtest.Pool(t, url), updater.Config{Mode: pointsd.Rolling, Period: period})
	runInBackground(t, u)

	waitEvents(t, u, 3*period, "a cycle two buckets in", 2, kind(updater.EventBucket))
	cut := readState(t, pool)
	finished := cycleCount(t, m)

	// End the leader's session and keep the lock until past the boundary:
	// queue for the lock first, so that the lock goes to the test, not to
	// the leader campaigning again.
	hold, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var leaderPID int
	var key int64
	if err := pool.QueryRow(ctx, `SELECT l.pid, (l.classid::bigint << 32) | l.objid::bigint
		FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'pointsd-leader/%'
		  AND a.datname = current_database()`).Scan(&leaderPID, &key); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() { _, err := hold.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); locked <- err }()
	pgtest.Eventually(t, 5*time.Second, "the test queues for the lock", func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)`).Scan(&waiting)
		return err == nil && waiting
	})
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, leaderPID); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	boundary := cut.StartedAt.Add(period)
	time.Sleep(time.Until(boundary.Add(200 * time.Millisecond)))
	_ = hold.Close(ctx) // releases the lock

	waitEvents(t, u, period, "the next cycle starts", 1, func(e updater.Event) bool {
		return e.Kind == updater.EventCycleStarted && e.Cycle > cut.Cycle
	})
	st := readState(t, pool)
	if got := cycleCount(t, m); got != finished+1 {
		t.Errorf("%d cycles finished since the cut, want 1: the cut cycle %d was not resumed", got-finished, cut.Cycle)
	}
	if st.Cycle != cut.Cycle+1 || !st.StartedAt.Equal(boundary) {
		t.Errorf("next cycle %d started at %v, want cycle %d on the boundary %v", st.Cycle, st.StartedAt, cut.Cycle+1, boundary)
	}
	if n := pgtest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw", n)
	}
}

// A schedule in the future (a leader with a fast clock, an edit) is not
// waited for: cycles go on, and a warning says why.
func TestFutureScheduleIsNotWaitedFor(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]string{
		"started_at": `started_at = now() + interval '1 hour'`,
		"next_start": `started_at = now(), next_start = now() + interval '1 hour'`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 100}))
			if _, err := pool.Exec(ctx, `UPDATE cycle_state SET cycle = 1, period_ms = 300, finished_at = now(), `+edit); err != nil {
				t.Fatal(err)
			}
			var logs pgtest.SyncBuffer
			u, _ := newUpdater(t, pool, updater.Config{Period: 300 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			runInBackground(t, u)
			waitEvents(t, u, 5*time.Second, "cycles go on", 2, kind(updater.EventCycleFinished))
			if !strings.Contains(logs.String(), `level=WARN msg="the published schedule is in the future`) {
				t.Errorf("no warning about the future schedule in the log:\n%s", logs.String())
			}
		})
	}
}

// A dropped partition does not shift the other buckets' slots past the
// period (every cycle overran): the cycles finish on time, and the damage
// is logged at ERROR and counted (by the API, the updater's listener, as
// in pointsd serve).
func TestMissingPartitionKeepsTheSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 4_000}))
	if _, err := pool.Exec(ctx, `DROP TABLE users_p1`); err != nil {
		t.Fatal(err)
	}
	apiMetrics := metrics.New()
	api, err := httpapi.New(httpapi.Config{Pool: pool, Metrics: apiMetrics, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var logs pgtest.SyncBuffer
	u, m := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling, Period: 800 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Listener: api})
	runInBackground(t, u)
	waitEvents(t, u, 10*time.Second, "two finished cycles", 2, kind(updater.EventCycleFinished))
	if got := testutil.ToFloat64(m.CycleOverruns); got != 0 {
		t.Errorf("%v overruns with a partition missing, want 0", got)
	}
	if got := testutil.ToFloat64(apiMetrics.StateProblems.WithLabelValues(pgsql.CheckPartitions)); got != 1 {
		t.Errorf("pointsd_state_problems{check=partitions} = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="database damaged" check=partitions`) {
		t.Errorf("no ERROR about the missing partition in the log:\n%s", logs.String())
	}
	if n := pgtest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw", n)
	}
}

// A cycle number set back by hand does not freeze the points: the next
// cycle is numbered past every bucket and rewrites them all.
func TestCycleNumberSetBackDoesNotFreezePoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 2_000}))
	u, _ := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling})
	for range 3 {
		if _, err := u.RunCycle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE cycle_state SET cycle = 1`); err != nil {
		t.Fatal(err)
	}
	res, err := u.RunCycle(ctx)
	if err != nil || res.Cycle != 4 || res.Rows != 2_000 {
		t.Fatalf("cycle after the number was set back: %+v, %v; want cycle 4 rewriting 2000 users", res, err)
	}
}

// poolAs opens a pool on url changed by edit, closed when t ends.
func poolAs(t *testing.T, url string, edit func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// cycleCount is the number of cycles m has seen finish.
func cycleCount(t *testing.T, m *metrics.Metrics) uint64 {
	t.Helper()
	return sampleCount(t, m, "pointsd_cycle_duration_seconds")
}

// sampleCount is the number of observations of the histogram name in m.
func sampleCount(t *testing.T, m *metrics.Metrics, name string) uint64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, f := range families {
		if f.GetName() == name {
			for _, s := range f.GetMetric() {
				n += s.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// histogramSum is the sum of every observation of the histogram name in m.
func histogramSum(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, s := range f.GetMetric() {
				sum += s.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}

// A strict cycle cut by shutdown rolls back whole, and the log says so.
func TestStrictCycleCutByShutdownIsLogged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 1_000}))
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
		CREATE TRIGGER slow AFTER UPDATE ON users FOR EACH STATEMENT EXECUTE FUNCTION slow();`); err != nil {
		t.Fatal(err)
	}
	var logs pgtest.SyncBuffer
	u, _ := newUpdater(t, pool, updater.Config{Mode: pointsd.Strict, Period: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	stop := runInBackground(t, u)
	pgtest.Eventually(t, 5*time.Second, "a strict cycle in its transaction", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'UPDATE users SET points%' AND state = 'active'`).Scan(&n)
		return err == nil && n == 1
	})
	if took := stop(); took > 5*time.Second {
		t.Errorf("Run took %v to return, want under 5s", took)
	}
	if st := readState(t, pool); st.Cycle != 0 {
		t.Errorf("cycle %d after the strict cycle was cut, want 0 (rolled back)", st.Cycle)
	}
	if !strings.Contains(logs.String(), `msg="cycle interrupted" cycle=1 mode=strict outcome="its transaction rolled back`) {
		t.Errorf("no line about the rolled-back cycle in the log:\n%s", logs.String())
	}
}
