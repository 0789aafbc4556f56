package updater_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// failBucket makes the update of bucket 1 fail halfway through its rows the
// first `times` times it is tried (a sequence counts tries, since it is not
// rolled back with them).
func failBucket(t *testing.T, db pgsql.DBTX, times int) {
	t.Helper()
	_, err := db.Exec(context.Background(), `
		CREATE SEQUENCE tries;
		CREATE FUNCTION fail_midway() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id = (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM `+bucketTable(t, db, 1)+`)
			   AND nextval('tries') <= `+itoa(times)+` THEN
				RAISE EXCEPTION 'injected failure';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER fail_midway BEFORE UPDATE ON `+bucketTable(t, db, 1)+`
			FOR EACH ROW EXECUTE FUNCTION fail_midway();`)
	if err != nil {
		t.Fatal(err)
	}
}

func bucketTable(t *testing.T, db pgsql.DBTX, bucket int) string {
	t.Helper()
	var name string
	if err := db.QueryRow(context.Background(),
		`SELECT partition::text FROM buckets WHERE bucket = $1`, bucket).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func itoa(n int) string { return strconv.Itoa(n) }

// A bucket whose transaction fails is retried within the cycle, and no
// reader ever sees it half-updated.
func TestFailedBucketIsRetriedAndNeverHalfApplied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 8_000}))
	u, m := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling, Workers: 1})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	failBucket(t, pool, 2)

	var wg sync.WaitGroup
	var mixed atomic.Int64
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				mixed.Add(mixedBuckets(t, pool))
			}
		}
	})
	res, err := u.RunCycle(ctx)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("cycle with two injected failures: %v", err)
	}
	if mixed.Load() != 0 {
		t.Errorf("readers saw a half-updated bucket %d times", mixed.Load())
	}
	if got := testutil.ToFloat64(m.UpdateErrors); got != 2 {
		t.Errorf("pointsd_update_errors_total = %v, want 2", got)
	}
	if n := mispredicted(t, pool, readState(t, pool).Seed); n != 0 || res.Buckets != 4 {
		t.Errorf("after retries: %d users not drawn from the seed, %d buckets; want 0 and 4", n, res.Buckets)
	}
}

// A bucket that keeps failing gives up after a period: it stays wholly old,
// the others are wholly new, and the cycle reports the failure.
func TestBucketThatKeepsFailingStaysWhollyOld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 8_000}))
	u, _ := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling, Period: time.Second})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	oldSeed := readState(t, pool).Seed
	failBucket(t, pool, 1_000_000)

	if _, err := u.RunCycle(ctx); err == nil {
		t.Fatal("cycle with a bucket that always fails reported success")
	}
	st := readState(t, pool)
	var oldRows, newRows, mixed int64
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE tableoid = $1::regclass AND points = pointsd_draw(id, $2)),
		       count(*) FILTER (WHERE tableoid <> $1::regclass AND points = pointsd_draw(id, $3)),
		       count(*) FILTER (WHERE tableoid = $1::regclass)
		FROM users`, bucketTable(t, pool, 1), oldSeed, st.Seed).Scan(&oldRows, &newRows, &mixed); err != nil {
		t.Fatal(err)
	}
	if oldRows != mixed || newRows != 8_000-mixed {
		t.Fatalf("failing bucket: %d of %d rows old; others: %d of %d new", oldRows, mixed, newRows, 8_000-mixed)
	}
	if st.FinishedAt != nil || st.BucketsDone != 3 {
		t.Errorf("state %+v: want an unfinished cycle with 3 of 4 buckets", st)
	}
}

// SIGTERM in the middle of a rolling cycle: Run returns within 5 s, no bucket
// is half-updated, and the next leader, though configured with another
// period, resumes the cycle where it stopped, on the slots it was published
// with.
func TestShutdownMidCycleThenResume(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 8, Users: 16_000})
	pool := pgtest.Pool(t, url)
	cfg := updater.Config{Mode: pointsd.Rolling, Period: 4 * time.Second}
	u, _ := newUpdater(t, pgtest.Pool(t, url), cfg)
	stop := runInBackground(t, u)

	cycle := waitEvents(t, u, 10*time.Second, "a cycle two buckets in", 2, kind(updater.EventBucket)).Cycle
	if took := stop(); took > 5*time.Second {
		t.Errorf("Run took %v to return after cancel, want under 5s", took)
	}
	st := readState(t, pool)
	if st.Cycle != cycle || st.FinishedAt != nil || st.BucketsDone == 8 {
		t.Fatalf("after shutdown: %+v; want cycle %d unfinished", st, cycle)
	}
	if n := mixedBuckets(t, pool); n != 0 {
		t.Fatalf("%d buckets half-updated after shutdown", n)
	}

	other := cfg
	other.Period = 10 * time.Second
	next, _ := newUpdater(t, pgtest.Pool(t, url), other)
	runInBackground(t, next)
	if done := waitEvents(t, next, 4*time.Second, "the next leader finishes a cycle", 1, kind(updater.EventCycleFinished)); done.Cycle != cycle {
		t.Fatalf("cycle %d finished instead of the resumed %d", done.Cycle, cycle)
	}
	if st := readState(t, pool); st.Cycle != cycle || st.FinishedAt == nil || st.BucketsDone != 8 {
		t.Fatalf("after the resumed cycle: %+v, want cycle %d finished with 8 buckets", st, cycle)
	}
	if n := mispredicted(t, pool, readState(t, pool).Seed); n != 0 {
		t.Fatalf("%d users not drawn from the resumed cycle's seed", n)
	}
}

// A cycle that overruns its period by more than half of it is finished,
// counted, and the next one starts on the next boundary: cycles never
// overlap, and the boundaries passed are counted as skipped. Here each
// cycle ends 1.4 periods past its boundary, 0.2 s into a period: not
// half a period into it, but the overrun is too large to start the next
// cycle back to back.
func TestOverrunIsCountedAndCyclesDoNotOverlap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const period = 500 * time.Millisecond
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 1_000}))
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(1.2); RETURN NULL; END $$;
		CREATE TRIGGER slow AFTER UPDATE ON users FOR EACH STATEMENT EXECUTE FUNCTION slow();
		-- Every change of the state, when it was made: the cycles' history.
		CREATE TABLE history (cycle bigint, finished boolean, started_at timestamptz, at timestamptz);
		CREATE FUNCTION record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO history VALUES (NEW.cycle, NEW.finished_at IS NOT NULL, NEW.started_at, clock_timestamp()); RETURN NULL; END $$;
		CREATE TRIGGER record AFTER UPDATE ON cycle_state FOR EACH ROW EXECUTE FUNCTION record();`); err != nil {
		t.Fatal(err)
	}
	u, m := newUpdater(t, pool, updater.Config{Mode: pointsd.Strict, Period: period})
	stop := runInBackground(t, u)
	waitEvents(t, u, 10*time.Second, "two overruns", 2, func(e updater.Event) bool {
		return e.Kind == updater.EventCycleFinished && e.Result.Took > period
	})
	stop()
	if got := testutil.ToFloat64(m.CycleOverruns); got < 2 {
		t.Errorf("pointsd_cycle_overruns_total = %v after two overruns", got)
	}
	if got := testutil.ToFloat64(m.CyclesSkipped); got < 2 {
		t.Errorf("pointsd_cycle_boundaries_skipped_total = %v after two overruns of 1.4 periods, want 2 a cycle", got)
	}

	// No cycle started before the one before it finished, nor late: after
	// an overrun past half a period the next waits for the next boundary,
	// rather than starting at once on the one just passed.
	var overlaps, late, cycles int
	if err := pool.QueryRow(ctx, `
		WITH starts AS (SELECT cycle, min(at) AS at, min(started_at) AS boundary FROM history WHERE NOT finished GROUP BY cycle),
		     finishes AS (SELECT cycle, min(at) AS at FROM history WHERE finished GROUP BY cycle)
		SELECT count(*) FILTER (WHERE f.at IS NULL OR s.at < f.at),
		       count(*) FILTER (WHERE s.at - s.boundary > interval '150 milliseconds'),
		       count(*)
		FROM starts s LEFT JOIN finishes f ON f.cycle = s.cycle - 1
		WHERE s.cycle > 1`).Scan(&overlaps, &late, &cycles); err != nil {
		t.Fatal(err)
	}
	if overlaps != 0 || late != 0 || cycles < 1 {
		t.Errorf("of %d cycles, %d started before the previous one finished and %d after their boundary", cycles, overlaps, late)
	}

	st := readState(t, pool)
	if !st.StartedAt.Equal(st.StartedAt.Truncate(period)) {
		t.Errorf("cycle started at %v, not on a %v boundary", st.StartedAt, period)
	}
	if st.LastDuration == nil || *st.LastDuration < period.Seconds() {
		t.Errorf("last duration %v, want over the %v period", st.LastDuration, period)
	}
}

// A rolling cycle that overruns its period by a little costs no period:
// the next cycle starts as soon as it ends, on the boundary it passed, and
// is counted as late; no boundary is skipped. The slowest bucket is
// learned, so later cycles leave it more room.
func TestSmallOverrunStartsTheNextCycleAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const period = time.Second
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 1_000}))
	// The last bucket takes three quarters of the period: it ends past the
	// boundary however its slot is placed.
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.75); RETURN NULL; END $$;
		CREATE TRIGGER slow AFTER UPDATE ON users_p1 FOR EACH STATEMENT EXECUTE FUNCTION slow();
		CREATE TABLE history (cycle bigint, finished boolean, started_at timestamptz, spread_ms bigint, at timestamptz);
		CREATE FUNCTION record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO history VALUES (NEW.cycle, NEW.finished_at IS NOT NULL, NEW.started_at, NEW.spread_ms, clock_timestamp());
		RETURN NULL; END $$;
		CREATE TRIGGER record AFTER UPDATE ON cycle_state FOR EACH ROW EXECUTE FUNCTION record();`); err != nil {
		t.Fatal(err)
	}
	var logs pgtest.SyncBuffer
	u, m := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling, Period: period,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	stop := runInBackground(t, u)
	waitEvents(t, u, 15*time.Second, "four cycles", 4, func(e updater.Event) bool {
		return e.Kind == updater.EventCycleFinished
	})
	stop()
	// The operator is told why, and what to do.
	if !strings.Contains(logs.String(), "rolling buckets are too large for the period") ||
		!strings.Contains(logs.String(), "more partitions") {
		t.Errorf("no warning that the buckets are too large, naming the remedy; log:\n%s", logs.String())
	}
	if got := testutil.ToFloat64(m.CycleOverruns); got < 2 {
		t.Errorf("pointsd_cycle_overruns_total = %v, want every cycle counted", got)
	}
	if got := testutil.ToFloat64(m.CycleLateStarts); got < 2 {
		t.Errorf("pointsd_cycle_late_starts_total = %v, want the cycles after overruns counted", got)
	}
	if got := testutil.ToFloat64(m.CyclesSkipped); got != 0 {
		t.Errorf("pointsd_cycle_boundaries_skipped_total = %v, want 0", got)
	}
	// Every cycle after the first started on the boundary after its
	// predecessor's, and only once that one had finished.
	var overlaps, gaps, cycles int
	var spreads []int64
	if err := pool.QueryRow(ctx, `
		WITH starts AS (SELECT cycle, min(at) AS at, min(started_at) AS boundary, min(spread_ms) AS spread
		                FROM history WHERE NOT finished GROUP BY cycle),
		     finishes AS (SELECT cycle, min(at) AS at FROM history WHERE finished GROUP BY cycle)
		SELECT count(*) FILTER (WHERE f.at IS NULL OR s.at < f.at),
		       count(*) FILTER (WHERE s.boundary - p.boundary <> interval '1 second'),
		       count(*), array_agg(s.spread ORDER BY s.cycle)
		FROM starts s JOIN starts p ON p.cycle = s.cycle - 1 LEFT JOIN finishes f ON f.cycle = s.cycle - 1
		WHERE p.cycle > 0 -- the seeded state's row changes when next_start is published`).
		Scan(&overlaps, &gaps, &cycles, &spreads); err != nil {
		t.Fatal(err)
	}
	if cycles < 2 || overlaps != 0 || gaps != 0 {
		t.Errorf("of %d cycles, %d started before the previous one finished and %d not on the next boundary", cycles, overlaps, gaps)
	}
	// The first cycle keeps a tenth of the period; once its 0.75 s bucket
	// is known, the most a reserve may be: a quarter.
	if len(spreads) < 2 || spreads[len(spreads)-1] != 750 {
		t.Errorf("spreads %v ms, want the last at 750 (the period less the largest reserve)", spreads)
	}
}
