package updater_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// A partition another session keeps locked (VACUUM FULL, CREATE INDEX)
// must not hold up the cycle: its bucket gives up on the lock after
// lock_timeout, the other buckets go on, and it is tried again later in
// the cycle. With one worker, buckets 2 and 3 commit while bucket 1 is
// still locked; bucket 1 commits once the lock is gone.
func TestLockedBucketIsTriedAgainLater(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1_000})
	pool := pgtest.Pool(t, url)
	buckets, err := pgsql.Buckets(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	holder := connectAs(t, url, "test-lock-holder")
	if _, err := holder.Exec(ctx, `BEGIN; LOCK TABLE `+buckets[1].Partition.Sanitize()+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const held = 2500 * time.Millisecond
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(held)
		_, _ = holder.Exec(ctx, `ROLLBACK`)
		released <- time.Now()
	}()

	cfg := updater.Config{Period: 10 * time.Second, Workers: 1}
	u, _ := newUpdater(t, sessionPool(t, url, "pointsd-updater/test", updater.SessionLimits(cfg.Period)), cfg)
	res, err := u.RunCycle(ctx)
	if err != nil {
		t.Fatalf("cycle with a partition locked for %v: %v", held, err)
	}
	freed := <-released
	if res.Buckets != 4 {
		t.Errorf("%d buckets rewritten, want 4", res.Buckets)
	}
	var order []int
	countEvents([]*updater.Updater{u}, func(e updater.Event) bool {
		if e.Kind == updater.EventBucket {
			order = append(order, e.Bucket)
		}
		return false
	})
	if len(order) != 4 || order[3] != 1 {
		t.Errorf("bucket commit order %v, want bucket 1 last", order)
	}
	// Buckets 2 and 3 did not wait for the lock: they were rewritten
	// before it was released.
	for _, b := range []int{2, 3} {
		var at time.Time
		if err := pool.QueryRow(ctx, `SELECT updated_at FROM buckets WHERE bucket = $1`, b).Scan(&at); err != nil {
			t.Fatal(err)
		}
		if !at.Before(freed) {
			t.Errorf("bucket %d rewritten at %v, after the lock was released at %v: it waited", b, at, freed)
		}
	}
	if n := pgtest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw", n)
	}
}

// A DBA's statement_timeout on pointsd's role, shorter than a strict
// cycle, would cancel every strict cycle, rolling back all its work each
// time. pointsd's own sessions set their own, whatever the role's or the
// database's default.
func TestOwnStatementTimeoutOverridesTheRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 200_000})
	admin := pgtest.Pool(t, url)
	if _, err := admin.Exec(ctx, `DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L', current_user, current_database(), '20ms'); END $$`); err != nil {
		t.Fatal(err)
	}
	cfg := updater.Config{Period: time.Second, Mode: pointsd.Strict}

	// The role's setting applies to the test's database alone, and goes
	// with it. Without pointsd's settings the strict cycle is cancelled:
	// the test would pass for nothing if it were not.
	plain, _ := newUpdater(t, pgtest.Pool(t, url), cfg)
	_, err := plain.RunCycle(ctx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("strict cycle on a plain session under a 20ms statement_timeout: %v, want it cancelled (57014)", err)
	}

	bounded := sessionPool(t, url, "pointsd-updater/test", updater.SessionLimits(cfg.Period))
	u, _ := newUpdater(t, bounded, cfg)
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatalf("strict cycle on pointsd's session: %v", err)
	}
	settings := map[string]string{}
	rows, err := bounded.Query(ctx, `SELECT name, setting || coalesce(unit, '') FROM pg_settings
		WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')`)
	if err != nil {
		t.Fatal(err)
	}
	var name, value string
	if _, err := pgx.ForEachRow(rows, []any{&name, &value}, func() error { settings[name] = value; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"statement_timeout": "30000ms", "lock_timeout": "1000ms", "idle_in_transaction_session_timeout": "5000ms"}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("%s = %q on pointsd's session, want %q", k, settings[k], v)
		}
	}
}

// A DBA's ALTER TABLE users queued behind a long reader blocks every
// write to users until it is through. Once the reader ends it must get
// through at once: bucket transactions wait on the parent, holding no
// partition, rather than each holding its partition against the ALTER
// until its lock_timeout. The cycle then finishes.
func TestQueuedAlterTableGoesThroughAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 16, Users: 2_000})
	pool := pgtest.Pool(t, url)
	reader := connectAs(t, url, "test-reader")
	if _, err := reader.Exec(ctx, `BEGIN; SELECT count(*) FROM users`); err != nil {
		t.Fatal(err)
	}
	alterDone := make(chan time.Time, 1)
	go func() {
		if _, err := pool.Exec(ctx, `ALTER TABLE users ADD COLUMN note text`); err != nil {
			t.Error(err)
		}
		alterDone <- time.Now()
	}()
	pgtest.Eventually(t, 5*time.Second, "the ALTER queues", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE users%' AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n == 1
	})

	cfg := updater.Config{Period: 20 * time.Second, Workers: 2}
	u, _ := newUpdater(t, sessionPool(t, url, "pointsd-updater/test", updater.SessionLimits(cfg.Period)), cfg)
	cycle := make(chan error, 1)
	go func() { _, err := u.RunCycle(ctx); cycle <- err }()
	time.Sleep(2500 * time.Millisecond) // the buckets meet the queued ALTER
	released := time.Now()
	if _, err := reader.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-alterDone:
		if took := at.Sub(released); took > time.Second {
			t.Errorf("the ALTER took %v after the reader ended: the buckets held it up", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the ALTER did not get through within 15 s of the reader's end")
	}
	if err := <-cycle; err != nil {
		t.Fatalf("cycle behind a queued ALTER: %v", err)
	}
	if n := pgtest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw", n)
	}
}
