package pgsql_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

func TestSeedIsIdempotentAndFillsTheRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))

	steps := []struct {
		n                   int64
		wantExisting, added int64
	}{
		{1_000, 0, 1_000},
		{1_000, 1_000, 0},
		{120_000, 1_000, 119_000}, // more than one chunk
	}
	for _, s := range steps {
		var last int64
		res, err := pgsql.Seed(ctx, pool, s.n, 2, func(added, missing int64) {
			if missing != s.added {
				t.Errorf("progress: %d missing, want %d", missing, s.added)
			}
			last = max(last, added)
		})
		if err != nil {
			t.Fatalf("seed %d: %v", s.n, err)
		}
		if res.Existing != s.wantExisting || res.Added != s.added {
			t.Errorf("seed %d = %+v, want existing %d added %d", s.n, res, s.wantExisting, s.added)
		}
		if last != s.added {
			t.Errorf("seed %d: progress reached %d, want %d", s.n, last, s.added)
		}
		assertUsers(t, pool, s.n)
	}

	if _, err := pgsql.Seed(ctx, pool, 10, 2, nil); !errors.Is(err, pgsql.ErrTooManyUsers) {
		t.Errorf("seed 10 over 120000: err = %v, want ErrTooManyUsers", err)
	}
	assertUsers(t, pool, 120_000)
}

func TestSeedFillsGaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Users: 500}))
	if _, err := pool.Exec(ctx, `DELETE FROM users WHERE id IN (7, 300)`); err != nil {
		t.Fatal(err)
	}
	res, err := pgsql.Seed(ctx, pool, 600, 2, nil)
	if err != nil || res.Added != 102 {
		t.Fatalf("seed 600 over 498 with gaps = %+v, %v; want 102 added", res, err)
	}
	assertUsers(t, pool, 600)
}

// assertUsers checks that exactly users 1..n exist, all with valid points.
func assertUsers(t *testing.T, db pgsql.DBTX, n int64) {
	t.Helper()
	var count, lo, hi, bad int64
	err := db.QueryRow(context.Background(), `
		SELECT count(*), min(id), max(id), count(*) FILTER (WHERE points NOT BETWEEN 0 AND 100)
		FROM users`).Scan(&count, &lo, &hi, &bad)
	if err != nil {
		t.Fatal(err)
	}
	if count != n || lo != 1 || hi != n || bad != 0 {
		t.Fatalf("users: count %d ids %d..%d invalid points %d; want exactly 1..%d", count, lo, hi, bad, n)
	}
}

// Two seeds at once both succeed: the second waits for the first and finds
// its users, instead of colliding with them.
func TestConcurrentSeedsBothSucceed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{})
	a, b := pgtest.Pool(t, url), pgtest.Pool(t, url)
	errs := make(chan error, 2)
	for _, pool := range []*pgxpool.Pool{a, b} {
		go func() {
			_, err := pgsql.Seed(ctx, pool, 200_000, 2, nil)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent seed: %v", err)
		}
	}
	assertUsers(t, a, 200_000)
}

func TestSeedRefusesAbsurdCounts(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	if _, err := pgsql.Seed(context.Background(), pool, pgsql.MaxUsers+1, 2, nil); err == nil {
		t.Errorf("seeding %d users succeeded", pgsql.MaxUsers+1)
	}
}
