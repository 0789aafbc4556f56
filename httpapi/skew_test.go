package httpapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

func TestReuseRule(t *testing.T) {
	local := time.Date(2020, 7, 30, 17, 9, 0, 0, time.UTC) // this replica's clock
	until := local.Add(10 * time.Second)                   // the schedule's, in the database's time
	a := &answer{until: until, read: local.Add(-time.Second), fresh: local.Add(time.Minute)}
	heard := local.Add(time.Second) // the listener is proven alive
	for _, c := range []struct {
		name string
		a    *answer
		at   moment
		want verdict
	}{
		{"within the window", a, moment{local: local, db: until.Add(-time.Second), synced: true, heardUntil: heard}, serve},
		{"the database's clock, not the local one, decides", &answer{until: local.Add(-time.Hour), read: local, fresh: local.Add(time.Minute)},
			moment{local: local, db: local.Add(-time.Hour - time.Second), synced: true, heardUntil: heard}, serve},
		{"the local clock far behind does not stretch the window", a,
			moment{local: local.Add(-time.Hour), db: until, synced: true, heardUntil: heard}, readAgain},
		{"the margin is taken off: within skewMargin of until", a,
			moment{local: local, db: until.Add(-skewMargin), synced: true, heardUntil: heard}, readAgain},
		{"just outside skewMargin", a,
			moment{local: local, db: until.Add(-skewMargin - time.Millisecond), synced: true, heardUntil: heard}, serve},
		{"unsynced: unsyncedMargin off the local clock", a,
			moment{local: local, db: until.Add(-unsyncedMargin), heardUntil: heard}, readAgain},
		{"unsynced, outside unsyncedMargin", a,
			moment{local: local, db: until.Add(-unsyncedMargin - time.Millisecond), heardUntil: heard}, serve},
		{"no schedule: never reused", &answer{read: local, fresh: local.Add(time.Minute)},
			moment{local: local, db: local, synced: true, heardUntil: heard}, readAgain},
		{"past maxAge: served while read again", &answer{until: until, read: local.Add(-2 * time.Second), fresh: local.Add(-time.Second)},
			moment{local: local, db: local, synced: true, heardUntil: heard}, serveAndRevalidate},
		{"listener not proven: an answer read 1s ago is read again", a,
			moment{local: local, db: local, synced: true}, readAgain},
		{"listener proven until just now: read again", a,
			moment{local: local, db: local, synced: true, heardUntil: local}, readAgain},
		{"listener not proven: within unheardMaxAge of the read", &answer{until: until, read: local.Add(-unheardMaxAge + time.Millisecond), fresh: local.Add(time.Minute)},
			moment{local: local, db: local, synced: true}, serve},
		{"listener not proven: unheardMaxAge after the read", &answer{until: until, read: local.Add(-unheardMaxAge), fresh: local.Add(time.Minute)},
			moment{local: local, db: local, synced: true}, readAgain},
		{"listener not proven, within unheardMaxAge, the schedule still rules", &answer{until: until, read: local, fresh: local.Add(time.Minute)},
			moment{local: local, db: until, synced: true}, readAgain},
	} {
		if got := reuse(c.a, c.at); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
}

// A replica whose clock is 1 s or 5 s behind or ahead of the database's,
// with a schedule published in the database's time: its answer is reused
// until just before the schedule says it may change, in the database's
// time, and never after. The change commits without a NOTIFY, as one the
// listener has not heard yet would: only the schedule stands between it
// and an untrue answer. Deciding on the local clock (before pgsql.Clock)
// fails each case: behind, the old answer outlives the change; ahead, it
// is read again long before it has to be.
func TestSkewedClockServesNoUntrueAnswer(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{-5 * time.Second, -time.Second, time.Second, 5 * time.Second} {
		t.Run(fmt.Sprintf("local clock %v off", skew), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 100})
			pool := pgtest.Pool(t, url)
			clock := pgsql.NewClock(func() time.Time { return time.Now().Add(skew) })
			if err := clock.Sync(ctx, pool); err != nil {
				t.Fatal(err)
			}
			a, srv := newAPI(t, url, Config{Clock: clock, CacheMaxAge: time.Hour})
			listen(t, a)

			// Everyone qualifies until the floor is raised to 100 at next_start.
			var next time.Time
			if err := pool.QueryRow(ctx, `
				WITH u AS (UPDATE users SET points = 50)
				UPDATE cycle_state SET floor = 10, next_start = clock_timestamp() + interval '2 seconds'
				RETURNING next_start`).Scan(&next); err != nil {
				t.Fatal(err)
			}
			users := func() int {
				t.Helper()
				_, body := get(t, srv.URL+"/")
				return len(body["users"].([]any))
			}
			if n := users(); n != 2 {
				t.Fatalf("%d users before the change, want 2", n)
			}
			first := a.cache.current.Load()
			dbBefore := func(at time.Time) bool {
				var before bool
				if err := pool.QueryRow(ctx, `SELECT clock_timestamp() < $1`, at).Scan(&before); err != nil {
					t.Fatal(err)
				}
				return before
			}
			// Reused up to half a second before next_start, database time.
			for dbBefore(next.Add(-500 * time.Millisecond)) {
				if n := users(); n != 2 || a.cache.current.Load() != first {
					t.Fatalf("%v before next_start: %d users, read again %v; want the answer reused",
						time.Until(next).Round(time.Millisecond), n, a.cache.current.Load() != first)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for dbBefore(next) {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := pool.Exec(ctx, `UPDATE cycle_state SET floor = 100`); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if n := users(); n != 0 {
					t.Fatalf("request %d after the floor rose to 100 at next_start: %d users, want none", i, n)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
