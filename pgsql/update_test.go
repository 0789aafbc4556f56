package pgsql_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// A full update must be entirely HOT, and repeated updates must not grow the
// table: that is what fillfactor and the missing index on points buy.
//
// Not parallel: pruning a page needs its dead rows to be older than every
// snapshot the server holds, and the other tests' transactions would hold
// back that horizon between these back-to-back updates. A deployed pointsd
// rewrites a row once per period, far apart from the queries' snapshots.
func TestFullUpdateIsHOTAndTableDoesNotGrow(t *testing.T) {
	ctx := context.Background()
	const users = 40_000
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Users: users}))

	var sizeAfterFirst int64
	for i := range 10 {
		n, err := pgsql.UpdateAll(ctx, pool, int64(i))
		if err != nil || n != users {
			t.Fatalf("update %d: %d rows, %v", i, n, err)
		}
		if i == 0 {
			sizeAfterFirst = tableSize(t, pool)
		}
	}
	if size := tableSize(t, pool); float64(size) > 1.1*float64(sizeAfterFirst) {
		t.Errorf("table grew from %d to %d bytes over 10 updates (> 1.1x)", sizeAfterFirst, size)
	}

	// Statistics reach the shared counters asynchronously: poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		upd, hot := updateStats(t, pool)
		if upd == 10*users {
			if hot != upd {
				t.Fatalf("%d of %d updated tuples were HOT, want all", hot, upd)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("statistics show %d updates, want %d", upd, 10*users)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUpdatePartitionTouchesOnlyItsPartition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 10_000}))

	var part string
	var inPart int64
	if err := pool.QueryRow(ctx, `
		SELECT b.partition::text, (SELECT count(*) FROM users u WHERE u.tableoid = b.partition)
		FROM buckets b WHERE bucket = 2`).Scan(&part, &inPart); err != nil {
		t.Fatal(err)
	}
	n, err := pgsql.UpdatePartition(ctx, pool, pgx.Identifier{part}, 42)
	if err != nil || n != inPart {
		t.Fatalf("UpdatePartition = %d, %v; want %d rows", n, err, inPart)
	}
	var drawn, others int64
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE tableoid = $1::regclass AND points = pointsd_draw(id, 42)),
		       count(*) FILTER (WHERE tableoid <> $1::regclass AND points <> 0)
		FROM users`, part).Scan(&drawn, &others); err != nil {
		t.Fatal(err)
	}
	if drawn != inPart || others != 0 {
		t.Fatalf("%d of %d rows in %s drawn from the seed, %d rows elsewhere changed", drawn, inPart, part, others)
	}
}

func tableSize(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var size int64
	if err := pool.QueryRow(context.Background(), `
		SELECT sum(pg_table_size(inhrelid)) FROM pg_inherits
		WHERE inhparent = 'users'::regclass`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	return size
}

func updateStats(t *testing.T, pool *pgxpool.Pool) (upd, hot int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `
		SELECT coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_hot_upd), 0)
		FROM pg_stat_user_tables s JOIN pg_inherits i ON i.inhrelid = s.relid
		WHERE i.inhparent = 'users'::regclass`).Scan(&upd, &hot); err != nil {
		t.Fatal(err)
	}
	return upd, hot
}

// pointsd_bucket_draw is the invariant's one statement: 0 for a bucket never
// rewritten, the seed's draw after, null when the record says nothing. It
// is inlined, so that counting a million users' draws stays one scan.
func TestBucketDraw(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	var never, drawn, want int16
	var unknown *int16
	if err := pool.QueryRow(ctx, `SELECT pointsd_bucket_draw(7, 0, 42), pointsd_bucket_draw(7, 3, 42),
		pointsd_draw(7, 42), pointsd_bucket_draw(7, NULL, NULL)`).Scan(&never, &drawn, &want, &unknown); err != nil {
		t.Fatal(err)
	}
	if never != 0 || drawn != want || unknown != nil {
		t.Errorf("bucket draws: cycle 0 %d, cycle 3 %d (draw %d), unknown %v; want 0, the draw, null", never, drawn, want, unknown)
	}
	rows, err := pool.Query(ctx, `EXPLAIN (VERBOSE, COSTS OFF)
		SELECT pointsd_bucket_draw(u.id, b.cycle, b.seed) FROM users u JOIN buckets b ON b.partition = u.tableoid`)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(plan, "\n"); strings.Contains(text, "pointsd_") || !strings.Contains(text, "hashint8extended") {
		t.Errorf("pointsd_bucket_draw is not inlined:\n%s", text)
	}
}
