package updater_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/partition"
	"github.com/pointsd/pointsd/updater"
)

func TestPointsAndFloorArePredictedFromTheSeed(t *testing.T) {
	t.Parallel()
	for _, mode := range []pointsd.Mode{pointsd.Rolling, pointsd.Strict} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			const users = 5_000
			pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 6, Users: users}))
			r, predict := seededRand()
			u, m := newUpdater(t, pool, updater.Config{Mode: mode, Rand: r})

			for cycle := int64(1); cycle <= 3; cycle++ {
				res, err := u.RunCycle(ctx)
				if err != nil {
					t.Fatal(err)
				}
				wantFloor, wantSeed := predict.IntN(101), int64(predict.Uint64()) //nolint:gosec // G115: the seed is 64 random bits, reinterpreted
				if res.Cycle != cycle || res.Rows != users || res.Buckets != 6 || res.Mode != mode {
					t.Fatalf("cycle %d: result %+v, want cycle %d, %d rows in 6 buckets", cycle, res, cycle, users)
				}
				st := readState(t, pool)
				if st.Cycle != cycle || st.Floor != wantFloor || st.Seed != wantSeed || st.Mode != mode {
					t.Fatalf("state %+v, want cycle %d floor %d seed %d", st, cycle, wantFloor, wantSeed)
				}
				if st.FinishedAt == nil || st.BucketsDone != 6 || st.BucketsTotal != 6 {
					t.Fatalf("state %+v: want finished with 6/6 buckets", st)
				}
				if n := mispredicted(t, pool, wantSeed); n != 0 {
					t.Fatalf("cycle %d: %d users' points differ from the seed's draw", cycle, n)
				}
			}
			if got := testutil.ToFloat64(m.RowsUpdated); got != 3*users {
				t.Errorf("pointsd_rows_updated_total = %v, want %d", got, 3*users)
			}
			if got := testutil.CollectAndCount(m.CycleDuration); got != 1 {
				t.Errorf("cycle duration series = %d, want 1 (mode %s)", got, mode)
			}
		})
	}
}

// Points are uniform over 0..100 inclusive: both ends are drawn, and no
// value is far from its share.
func TestPointsCoverZeroToHundredUniformly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const users = 50_500
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Users: users}))
	u, _ := newUpdater(t, pool, updater.Config{Mode: pointsd.Strict})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	var lo, hi, values, fewest, most int
	if err := pool.QueryRow(ctx, `
		SELECT min(points), max(points), count(*), min(n), max(n)
		FROM (SELECT points, count(*) AS n FROM users GROUP BY points) AS h`).
		Scan(&lo, &hi, &values, &fewest, &most); err != nil {
		t.Fatal(err)
	}
	// 500 expected per value; ±25% is over 5 standard deviations.
	if lo != 0 || hi != 100 || values != 101 || fewest < 375 || most > 625 {
		t.Fatalf("points %d..%d in %d values, %d to %d users each; want 0..100, 101 values, 375..625 each",
			lo, hi, values, fewest, most)
	}
}

// A reader polling throughout strict cycles never sees two generations:
// every user's points are the current seed's draw and share one updated_at.
func TestStrictCycleIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 8, Users: 40_000}))
	u, _ := newUpdater(t, pool, updater.Config{Mode: pointsd.Strict})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, torn atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var wrong, stamps int
			err := pool.QueryRow(ctx, `
				SELECT count(*) FILTER (WHERE u.points <> pointsd_draw(u.id, s.seed)),
				       count(DISTINCT u.updated_at)
				FROM users u CROSS JOIN cycle_state s`).Scan(&wrong, &stamps)
			if err != nil {
				t.Error(err)
				return
			}
			reads.Add(1)
			if wrong != 0 || stamps != 1 {
				torn.Add(1)
			}
		}
	})
	// Cycles go on until the reader has read a good many times across them.
	for cycles := 0; cycles < 4 || reads.Load() < 30; cycles++ {
		if _, err := u.RunCycle(ctx); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if torn.Load() != 0 {
		t.Fatalf("%d of %d reads saw two generations, want none", torn.Load(), reads.Load())
	}
}

// Rolling under Run: every bucket is rewritten once per cycle at its slot
// (spread over the part of the period the cycle published), so each user's
// consecutive updates are about one period apart.
func TestRollingSpreadsBucketsAcrossThePeriod(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const period, buckets = 2 * time.Second, 4
	slot := period / buckets
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: buckets, Users: 2_000}))
	// Every cycle's published schedule.
	if _, err := pool.Exec(ctx, `
		CREATE TABLE history (cycle bigint, started_at timestamptz, spread_ms bigint);
		CREATE FUNCTION record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO history VALUES (NEW.cycle, NEW.started_at, NEW.spread_ms); RETURN NULL; END $$;
		CREATE TRIGGER record AFTER UPDATE OF cycle ON cycle_state FOR EACH ROW EXECUTE FUNCTION record();`); err != nil {
		t.Fatal(err)
	}
	u, m := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling, Period: period})
	stop := runInBackground(t, u)

	type sample struct {
		bucket int
		stamps []time.Time
	}
	seen := map[int64]*sample{}
	pgtest.Eventually(t, 5*period+5*time.Second, "three rolling cycles", func() bool {
		rows, err := pool.Query(ctx, `
			SELECT u.id, b.bucket, u.updated_at FROM users u JOIN buckets b ON b.partition = u.tableoid
			WHERE u.id <= 40`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		done := true
		for rows.Next() {
			var id int64
			var b int
			var at time.Time
			if err := rows.Scan(&id, &b, &at); err != nil {
				t.Fatal(err)
			}
			s := seen[id]
			if s == nil {
				s = &sample{bucket: b, stamps: []time.Time{at}}
				seen[id] = s
			} else if !at.Equal(s.stamps[len(s.stamps)-1]) {
				s.stamps = append(s.stamps, at)
			}
			done = done && len(s.stamps) >= 4 // the seed's stamp, then three cycles
		}
		return done
	})
	stop()

	type published struct {
		Cycle     int64
		StartedAt time.Time
		SpreadMS  int64
	}
	rows, err := pool.Query(ctx, `SELECT cycle, started_at, spread_ms FROM history ORDER BY cycle`)
	if err != nil {
		t.Fatal(err)
	}
	cycles, err := pgx.CollectRows(rows, pgx.RowToStructByPos[published])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cycles {
		if spread := time.Duration(c.SpreadMS) * time.Millisecond; spread < period*3/4 || spread >= period {
			t.Errorf("cycle %d published a spread of %v, want at least three quarters of the %v period and less than all", c.Cycle, spread, period)
		}
	}
	for id, s := range seen {
		for i, at := range s.stamps[1:] {
			// The bucket's slot in its cycle: no earlier, and within a slot.
			k, _ := slices.BinarySearchFunc(cycles, at, func(c published, at time.Time) int { return c.StartedAt.Compare(at) })
			if k == 0 {
				t.Fatalf("user %d updated at %v, before any cycle started", id, at)
			}
			c := cycles[k-1]
			sched := partition.Slots{Period: period, Buckets: buckets, Spread: time.Duration(c.SpreadMS) * time.Millisecond}
			from := sched.Slot(c.StartedAt, s.bucket)
			if off := at.Sub(from); off < 0 || off >= sched.Spread/buckets {
				t.Errorf("user %d (bucket %d) updated %v after its slot in cycle %d, want within [0, %v)",
					id, s.bucket, off, c.Cycle, sched.Spread/buckets)
			}
			if i > 0 {
				if gap := at.Sub(s.stamps[i]); gap < period-slot || gap > period+slot {
					t.Errorf("user %d updated %v after its previous update, want %v ± %v", id, gap, period, slot)
				}
			}
		}
	}
	if got := testutil.ToFloat64(m.CycleOverruns); got != 0 {
		t.Errorf("overruns = %v, want 0", got)
	}
	// Every bucket of every cycle that finished was timed.
	if got, cycles := sampleCount(t, m, "pointsd_bucket_update_duration_seconds"), cycleCount(t, m); got < buckets*cycles || cycles < 3 {
		t.Errorf("%d bucket transactions timed over %d finished cycles, want at least %d per cycle and 3 cycles", got, cycles, buckets)
	}
}
