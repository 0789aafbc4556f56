package updater_test

import (
	"context"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// A leader whose clock is 5 s fast or slow keeps the schedule on the
// database's clock, which every replica's cache reads it on: its cycles
// start on the period's boundaries in the database's time, not 5 s off.
// The skew is injected as the Clock's local clock, so this fails if the
// leader keeps any of its schedule (publishing, sleeping, lateness) on a
// local reading; this machine's own clock agrees with the server's.
func TestLeaderKeepsTheScheduleOnTheDatabasesClock(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{5 * time.Second, -5 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
			pool := pgtest.Pool(t, url)
			clock := pgsql.NewClock(func() time.Time { return time.Now().Add(skew) })
			if err := clock.Sync(ctx, pool); err != nil {
				t.Fatal(err)
			}
			const period = 500 * time.Millisecond
			u, _ := newUpdater(t, pool, updater.Config{Period: period, Clock: clock})
			runInBackground(t, u)
			waitEvents(t, u, 10*time.Second, "two cycles", 2, kind(updater.EventCycleFinished))
			var lag time.Duration
			var next time.Time
			var started time.Time
			if err := pool.QueryRow(ctx, `SELECT clock_timestamp() - started_at, started_at, next_start FROM cycle_state`).Scan(&lag, &started, &next); err != nil {
				t.Fatal(err)
			}
			if lag < 0 || lag > 2*period {
				t.Errorf("the current cycle started %v ago by the database's clock; want within two periods (a leader %v off that kept its own clock would be %v off)", lag, skew, skew)
			}
			if got := next.Sub(started); got != period {
				t.Errorf("next start %v after the cycle's start, want one period (%v)", got, period)
			}
		})
	}
}
