package pgsql

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// seedChunk is the number of ids one INSERT adds: small enough for a
// progress bar to move, large enough that statement overhead is noise.
const seedChunk = 50_000

// MaxUsers bounds Seed: a user takes partition.UserBytes of table (165), so
// a billion users is some 165 GB, already past what one PostgreSQL
// rewrites every minute.
const MaxUsers = 1_000_000_000

// seedLockID is the advisory lock concurrent seeds serialize on, so that
// the second finds the first's users instead of colliding with them.
const seedLockID = 7_310_449_110_003

// ErrTooManyUsers is returned by Seed when more users exist than asked for:
// seeding never deletes.
var ErrTooManyUsers = errors.New("more users exist than asked for")

// SeedResult says what Seed found and did.
type SeedResult struct {
	Existing int64 // users before seeding
	Added    int64
}

// Seed makes users 1..n exist with 0 points, adding only the missing ones,
// in chunks spread over workers connections (the INSERT is CPU-bound in the
// server, so one connection per core), and one more connection holding a lock
// that serializes concurrent seeds. progress, if not nil, is called
// after each chunk, never concurrently, with the users added so far and the
// number that were missing.
func Seed(ctx context.Context, pool *pgxpool.Pool, n int64, workers int, progress func(added, missing int64)) (SeedResult, error) {
	var res SeedResult
	if n < 0 || n > MaxUsers {
		return res, fmt.Errorf("users must be between 0 and %d, got %d", MaxUsers, n)
	}
	// The lock is held by a connection of its own, closed at the end:
	// closing the session releases the lock, whatever happened.
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	lock := pc.Hijack()
	defer func() { _ = lock.Close(context.Background()) }()
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(seedLockID)); err != nil {
		return res, fmt.Errorf("seed: take the seed lock: %w", err)
	}
	var maxID int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(max(id), 0) FROM users`).
		Scan(&res.Existing, &maxID); err != nil {
		return res, fmt.Errorf("count users: %w", err)
	}
	if res.Existing > n {
		return res, fmt.Errorf("%w: %d users exist, %d asked; seed never deletes users", ErrTooManyUsers, res.Existing, n)
	}
	if res.Existing == n {
		return res, nil
	}
	// Users seeded by pointsd are 1..count: only the tail is missing, and a
	// plain INSERT adds it. With gaps (users deleted or added by hand), the
	// whole range is tried and existing ids are skipped; ON CONFLICT is kept
	// for that case only, since it makes the insert 1.7x slower.
	from, insert := int64(1), insertSkippingSQL
	if res.Existing == maxID {
		from, insert = maxID+1, insertSQL
	}

	var (
		mu    sync.Mutex // progress is called by one goroutine at a time
		added int64
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(workers, 1))
	for lo := from; lo <= n; lo += seedChunk {
		hi := min(lo+seedChunk-1, n)
		g.Go(func() error {
			tag, err := pool.Exec(gctx, insert, lo, hi)
			if err != nil {
				return fmt.Errorf("insert users %d..%d: %w", lo, hi, err)
			}
			mu.Lock()
			defer mu.Unlock()
			added += tag.RowsAffected()
			if progress != nil {
				progress(added, n-res.Existing)
			}
			return nil
		})
	}
	err = g.Wait()
	res.Added = added
	// No ANALYZE: it would add a fifth to the time, and the query plans the
	// same without statistics; autovacuum analyzes the partitions soon after.
	return res, err
}

const (
	insertSQL = `INSERT INTO users (id)
		SELECT g FROM generate_series($1::bigint, $2::bigint) AS g`
	insertSkippingSQL = insertSQL + ` ON CONFLICT (id) DO NOTHING`
)
