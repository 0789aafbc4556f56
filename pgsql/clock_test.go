package pgsql_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// dbNow reads the database's clock.
func dbNow(t *testing.T, db pgsql.DBTX) time.Time {
	t.Helper()
	var now time.Time
	if err := db.QueryRow(context.Background(), `SELECT clock_timestamp()`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// The test's server runs on this machine's clock, so a local clock skewed
// by s is off the database's by exactly -s: the measured offset must be
// within its uncertainty of that, and Now must read the database's clock.
func TestClockMeasuresTheOffsetWithinItsUncertainty(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	for _, skew := range []time.Duration{-5 * time.Second, -time.Second, 0, time.Second, 5 * time.Second} {
		c := pgsql.NewClock(func() time.Time { return time.Now().Add(skew) })
		if now, _, ok := c.Offset(); ok || now != 0 {
			t.Fatalf("skew %v: offset %v, ok %v before a sync; want 0, false", skew, now, ok)
		}
		if err := c.Sync(context.Background(), pool); err != nil {
			t.Fatal(err)
		}
		offset, uncertainty, ok := c.Offset()
		if !ok || uncertainty <= 0 || uncertainty > 50*time.Millisecond {
			t.Fatalf("skew %v: ok %v, uncertainty %v; want a measurement within 50ms", skew, ok, uncertainty)
		}
		if off := offset + skew; off < -uncertainty || off > uncertainty {
			t.Errorf("skew %v: offset %v ± %v, want %v", skew, offset, uncertainty, -skew)
		}
		before := dbNow(t, pool)
		now := c.Now()
		latest, ok := c.Latest()
		after := dbNow(t, pool)
		_, uncertainty, _ = c.Offset()
		if !ok || now.Before(before.Add(-uncertainty)) || now.After(after.Add(uncertainty)) {
			t.Errorf("skew %v: Now %v, not within %v of the database's clock between %v and %v", skew, now, uncertainty, before, after)
		}
		if latest.Before(before) {
			t.Errorf("skew %v: Latest %v is before the database's clock read before it, %v", skew, latest, before)
		}
		// At, from a reading of time.Now (a request's), reads the same
		// clock: the local clock's skew does not move it either.
		before = dbNow(t, pool)
		atNow, atLatest, ok := c.At(time.Now())
		after = dbNow(t, pool)
		if !ok || atNow.Before(before.Add(-uncertainty)) || atNow.After(after.Add(uncertainty)) || atLatest.Before(before) {
			t.Errorf("skew %v: At: now %v, latest %v; want within %v of the database's clock between %v and %v, latest not before it",
				skew, atNow, atLatest, uncertainty, before, after)
		}
	}
}

// One slow sample (its round trip stretched by 200 ms of local time) must
// not be the one kept.
func TestClockKeepsTheShortestRoundTrip(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	var reads atomic.Int64
	c := pgsql.NewClock(func() time.Time {
		if reads.Add(1) >= 2 { // the first sample's end, and every reading after it
			return time.Now().Add(200 * time.Millisecond)
		}
		return time.Now()
	})
	if err := c.Sync(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	offset, uncertainty, _ := c.Offset()
	if uncertainty >= 100*time.Millisecond || offset > -150*time.Millisecond {
		t.Errorf("offset %v ± %v: the stretched sample was kept; want about -200ms, well within 100ms", offset, uncertainty)
	}
}

// Before any sync the clock is the local one; a failed sync keeps the
// last measurement; Run syncs until its context ends.
func TestClockUnsyncedAndRun(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	fixed := time.Date(2020, 7, 30, 17, 9, 33, 0, time.UTC)
	c := pgsql.NewClock(func() time.Time { return fixed })
	if got, ok := c.Latest(); !c.Now().Equal(fixed) || !got.Equal(fixed) || ok {
		t.Fatalf("unsynced: Now %v, Latest %v %v; want the local time %v, not ok", c.Now(), got, ok, fixed)
	}

	c = pgsql.NewClock(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, pool, 20*time.Millisecond); close(done) }()
	pgtest.Eventually(t, 5*time.Second, "Run never synced", func() bool { _, _, ok := c.Offset(); return ok })
	cancel()
	<-done

	dead, cancelDead := context.WithCancel(context.Background())
	cancelDead()
	if err := c.Sync(dead, pool); err == nil {
		t.Fatal("Sync on an ended context: no error")
	}
	if _, _, ok := c.Offset(); !ok {
		t.Error("a failed sync dropped the last measurement")
	}
}
