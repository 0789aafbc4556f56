package pgsql_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// A REPEATABLE READ snapshot held in another session while cycles run is
// found and named (its pid, application, user, state, since when), with
// the users table's growth since seeding (the first cycle fits in the
// pages' free space, the next two cannot reuse the dead versions' space);
// once it ends there is nothing to report. That the same cycles keep the
// table flat without a snapshot is docs/BENCHMARKS.md's to show: run here
// beside the other tests, it grew without one too, so it is not asserted.
func TestOldSnapshotIsNamedWithTheGrowth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 20_000})
	pool := pgtest.Pool(t, url)
	before := readHorizon(t, pool)
	if before.Oldest != nil || len(before.Slots) != 0 || len(before.Problems(0)) != 0 {
		t.Fatalf("no snapshot held: horizon %+v, problems %v", before, before.Problems(0))
	}
	if before.Users != 20_000 || before.TableBytes == 0 || before.ExpectedBytes == 0 {
		t.Fatalf("sizes %+v: want 20000 users and both sizes", before)
	}

	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "long-report"
	holder, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Close(ctx) }()
	begun := time.Now()
	tx, err := holder.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM users`); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	drawAll(t, pool, 3)

	held := readHorizon(t, pool)
	s := held.Oldest
	if s == nil {
		t.Fatal("a REPEATABLE READ snapshot is held: no oldest snapshot found")
	}
	if s.Holder != pgsql.HolderSession || s.PID != int(holder.PgConn().PID()) || s.Name != "long-report" ||
		s.User != cfg.User || s.State != "idle in transaction" {
		t.Errorf("oldest snapshot %+v: want the session pid %d, long-report, user %s, idle in transaction",
			s, holder.PgConn().PID(), cfg.User)
	}
	if s.Since.Before(begun.Add(-time.Second)) || s.Since.After(time.Now()) || s.Age <= 0 {
		t.Errorf("since %v (age %v): want from %v on", s.Since, s.Age, begun)
	}
	if held.TableBytes < before.TableBytes*3/2 {
		t.Errorf("users grew from %d to %d bytes in 3 cycles under the snapshot: want at least half again", before.TableBytes, held.TableBytes)
	}
	found := held.Problems(0)
	if len(found) != 1 || found[0].Check != pgsql.CheckOldSnapshot || found[0].Damage() {
		t.Fatalf("problems %+v: want one old_snapshot, not damage", found)
	}
	for _, want := range []string{fmt.Sprintf("session pid %d ", s.PID), `"long-report"`, "idle in transaction",
		fmt.Sprintf("pg_terminate_backend(%d)", s.PID), fmt.Sprintf("%.1f MiB", float64(held.TableBytes)/(1<<20))} {
		if !strings.Contains(found[0].Detail, want) {
			t.Errorf("detail %q does not say %q", found[0].Detail, want)
		}
	}
	// Younger than the threshold, as every transaction of pointsd's own
	// is: not a problem, for CheckState either.
	if p := held.Problems(time.Hour); len(p) != 0 {
		t.Errorf("a snapshot younger than the threshold: problems %v", p)
	}
	if checks := problems(t, pool); slices.Contains(checks, pgsql.CheckOldSnapshot) {
		t.Errorf("CheckState names a snapshot of %v, under OldSnapshotAfter: %v", s.Age, checks)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if after := readHorizon(t, pool); after.Oldest != nil || len(after.Problems(0)) != 0 {
		t.Errorf("snapshot ended: oldest still %+v", after.Oldest)
	}
}

func readHorizon(t *testing.T, db pgsql.DBTX) pgsql.Horizon {
	t.Helper()
	h, err := pgsql.ReadHorizon(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
