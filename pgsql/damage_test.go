package pgsql_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// Damage done by hand is found by CheckState and undone by Repair (with
// seed refilling lost users), after which every user is back and holds
// the draw its bucket records.
func TestDamageIsFoundAndRepaired(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, damage, check string
	}{
		{"partition dropped", `DROP TABLE users_p2`, pgsql.CheckPartitions},
		{"partition detached", `ALTER TABLE users DETACH PARTITION users_p1`, pgsql.CheckPartitions},
		{"partition recreated by hand", `DROP TABLE users_p3;
			CREATE TABLE users_p3 PARTITION OF users FOR VALUES WITH (MODULUS 4, REMAINDER 3)`, pgsql.CheckPartitions},
		{"state row deleted", `DELETE FROM cycle_state`, pgsql.CheckStateRow},
		{"cycle number set back", `UPDATE cycle_state SET cycle = cycle - 2`, pgsql.CheckCycleOrder},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 2_000}))
			drawAll(t, pool, 3)
			if p := problems(t, pool); len(p) != 0 {
				t.Fatalf("healthy database: problems %v", p)
			}
			if _, err := pool.Exec(ctx, c.damage); err != nil {
				t.Fatal(err)
			}
			if p := problems(t, pool); !slices.Equal(p, []string{c.check}) {
				t.Fatalf("after %q: problems %v, want [%s]", c.damage, p, c.check)
			}
			repaired, err := pgsql.Repair(ctx, pool)
			if err != nil || len(repaired) != 1 {
				t.Fatalf("repair: %q, %v; want one repair", repaired, err)
			}
			if _, err := pgsql.Seed(ctx, pool, 2_000, 2, nil); err != nil {
				t.Fatal(err)
			}
			if p := problems(t, pool); len(p) != 0 {
				t.Errorf("after repair: problems %v", p)
			}
			if n, maxID := pgtest.Users(t, pool); n != 2_000 || maxID != 2_000 {
				t.Errorf("after repair and seed: %d users up to id %d, want 1..2000", n, maxID)
			}
			if n := pgtest.OffDraw(t, pool); n != 0 {
				t.Errorf("after repair: %d users off their bucket's draw", n)
			}
			st, err := pgsql.ReadState(ctx, pool)
			if err != nil || st.Cycle != 3 {
				t.Errorf("after repair: state %+v, %v; want cycle 3", st, err)
			}
			if again, err := pgsql.Repair(ctx, pool); err != nil || len(again) != 0 {
				t.Errorf("second repair: %q, %v; want nothing to do", again, err)
			}
		})
	}
}

func TestQueryWithoutStateSaysSo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Users: 10}))
	if _, err := pool.Exec(ctx, `DELETE FROM cycle_state`); err != nil {
		t.Fatal(err)
	}
	if _, err := pgsql.QueryAnswer(ctx, pool); !errors.Is(err, pgsql.ErrNoState) {
		t.Errorf("QueryAnswer: %v, want ErrNoState", err)
	}
	if _, err := pgsql.ReadState(ctx, pool); !errors.Is(err, pgsql.ErrNoState) {
		t.Errorf("ReadState: %v, want ErrNoState", err)
	}
}

// A cycle whose cycle_state row is deleted while it runs claims none of its
// later buckets, so its finish must not pass for done.
func TestFinishWithoutStateSaysSo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Users: 10}))
	c := pointsd.Cycle{Schedule: pointsd.Schedule{Cycle: 1, Floor: 50, StartedAt: time.Now()}, Seed: 1001, Mode: "rolling"}
	if ok, err := pgsql.StartCycle(ctx, pool, c); err != nil || !ok {
		t.Fatalf("start cycle 1: started %v, %v", ok, err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM cycle_state`); err != nil {
		t.Fatal(err)
	}
	if err := pgsql.FinishCycle(ctx, pool, 1, 0, time.Second, 0); !errors.Is(err, pgsql.ErrNoState) {
		t.Errorf("FinishCycle after the row was deleted: %v, want ErrNoState", err)
	}
}

// drawAll runs cycles 1..n as strict cycles, the way the updater does.
func drawAll(t *testing.T, pool *pgxpool.Pool, n int64) {
	t.Helper()
	ctx := context.Background()
	for i := int64(1); i <= n; i++ {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
		c := pointsd.Cycle{Schedule: pointsd.Schedule{Cycle: i, Floor: 50, StartedAt: time.Now()}, Seed: 1000 + i, Mode: "strict"}
		if _, ok, err := pgsql.DrawAll(ctx, tx, c); err != nil || !ok {
			t.Fatalf("cycle %d: started %v, %v", i, ok, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pgsql.FinishCycle(ctx, pool, i, 0, time.Second, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func problems(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	ps, err := pgsql.CheckState(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.Check)
	}
	return out
}
