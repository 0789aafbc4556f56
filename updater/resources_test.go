package updater_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// A disk full on one bucket's partition (raised by a trigger halfway
// through its rows) is named and counted, and is not held against the
// leader: past the failures that make a leader step down it still leads,
// the other buckets commit cycle after cycle, and the failing one stays
// wholly at its old draw.
func TestDiskFullIsNamedAndNotHeldAgainstTheLeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 8_000}))
	var logs pgtest.SyncBuffer
	u, m := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling, Period: 400 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	full := bucketTable(t, pool, 1)
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id = (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM `+full+`) THEN
				RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER disk_full BEFORE UPDATE ON `+full+` FOR EACH ROW EXECUTE FUNCTION disk_full();`); err != nil {
		t.Fatal(err)
	}

	stop := runInBackground(t, u)
	// One more than the failures in a row that make a leader step down.
	waitEvents(t, u, 30*time.Second, "four cycles fail on the full bucket", 4, kind(updater.EventCycleFailed))
	leader, _ := u.LeaderStatus()
	followed := countEvents([]*updater.Updater{u}, kind(updater.EventFollowing))
	stop()
	if !leader || followed != 0 {
		t.Errorf("the leader stepped down over a full disk (leading at the 4th failure: %v, stepped down %d times)", leader, followed)
	}
	if got := testutil.ToFloat64(m.DatabaseErrors.WithLabelValues(pgsql.OutOfDisk)); got < 3 {
		t.Errorf("pointsd_database_errors_total{kind=disk_full} = %v, want at least 3", got)
	}
	if !strings.Contains(logs.String(), `problem="database out of disk space (SQLSTATE 53100)"`) {
		t.Errorf("the log does not name the full disk:\n%s", logs.String())
	}
	if n := countEvents([]*updater.Updater{u}, func(e updater.Event) bool {
		return e.Kind == updater.EventBucket && e.Cycle > 1
	}); n < 3*3 {
		t.Errorf("%d bucket commits after the disk filled, want the other 3 buckets in each of 3 cycles", n)
	}
	var fullCycle int64
	if err := pool.QueryRow(ctx, `SELECT cycle FROM buckets WHERE bucket = 1`).Scan(&fullCycle); err != nil {
		t.Fatal(err)
	}
	if fullCycle != 1 {
		t.Errorf("the full bucket records cycle %d, want 1 (never rewritten since)", fullCycle)
	}
	if n := pgtest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw: a bucket was half-applied", n)
	}
}
