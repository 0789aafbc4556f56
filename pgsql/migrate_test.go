package pgsql_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

func TestMigrateTwoReplicasAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Empty: true})
	a, b := pgtest.Pool(t, url), pgtest.Pool(t, url)

	var g errgroup.Group
	g.Go(func() error { return pgsql.Migrate(ctx, a, 6, nil) })
	g.Go(func() error { return pgsql.Migrate(ctx, b, 6, nil) })
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent migrate: %v", err)
	}

	n, err := pgsql.Partitions(ctx, a)
	if err != nil || n != 6 {
		t.Fatalf("partitions = %d, %v; want 6", n, err)
	}
	var buckets int
	if err := a.QueryRow(ctx, `SELECT count(*) FROM buckets`).Scan(&buckets); err != nil || buckets != 6 {
		t.Fatalf("buckets = %d, %v; want 6", buckets, err)
	}
	cur, latest, err := pgsql.SchemaVersion(ctx, a)
	if err != nil || cur != latest || latest < 2 {
		t.Fatalf("schema version %d of %d, %v; want current = latest >= 2", cur, latest, err)
	}
	// Idempotent, and 0 accepts the existing count.
	if err := pgsql.Migrate(ctx, a, 0, nil); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
}

func TestMigrateRefusesOtherPartitionCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 8}))

	err := pgsql.Migrate(ctx, pool, 7, nil)
	if !errors.Is(err, pgsql.ErrPartitions) {
		t.Fatalf("migrate -partitions 7 on 8: err = %v, want ErrPartitions", err)
	}
	for _, want := range []string{"has 8 partitions", "asks for 7", "recreate the database"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n, _ := pgsql.Partitions(ctx, pool); n != 8 {
		t.Errorf("partitions after refused migrate = %d, want 8 untouched", n)
	}
}

func TestMigrateRejectsOutOfRangeCount(t *testing.T) {
	t.Parallel()
	for _, n := range []int{-1, pgsql.MaxPartitions + 1} {
		if err := pgsql.Migrate(context.Background(), nil, n, nil); err == nil ||
			!strings.Contains(err.Error(), "partitions must be between 1 and") {
			t.Errorf("Migrate(%d) = %v, want a range error", n, err)
		}
	}
}

func TestNewSchemaHasAFloor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	var floor int
	if err := pool.QueryRow(ctx, `SELECT floor FROM cycle_state`).Scan(&floor); err != nil {
		t.Fatalf("no floor after migrate: %v", err)
	}
	if floor < 0 || floor > 100 {
		t.Fatalf("floor = %d, want 0..100", floor)
	}
}
