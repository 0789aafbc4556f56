package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// protoBuckets is the prototype's bucket count: pointsd's default.
const protoBuckets = 60

// protoSchema is a prototype of buckets that each live on one worker,
// measured beside pointsd's design (a bucket is a partition, whose shards
// are on every worker, so its commit is a two-phase commit over the
// coordinator and every worker). Here users is not partitioned: it is
// distributed into one shard per bucket, and each bucket's claim row lives
// in a table colocated with it, keyed by an id that hashes to that shard.
// draw_shard claims and rewrites one shard; as a distributed function on
// that key with force_delegation, the coordinator hands the whole call to
// the shard's worker, which runs it as one local transaction: no two-phase
// commit, one node.
var protoSchema = []string{
	`DROP TABLE IF EXISTS proto_users, proto_buckets`,
	`CREATE TABLE proto_users (
		id bigint PRIMARY KEY,
		points smallint NOT NULL DEFAULT 0 CHECK (points BETWEEN 0 AND 100),
		inserted_at timestamptz NOT NULL DEFAULT now(),
		updated_at timestamptz NOT NULL DEFAULT now()
	) WITH (fillfactor = 45, autovacuum_vacuum_cost_delay = 0)`,
	fmt.Sprintf(`SELECT create_distributed_table('proto_users', 'id', shard_count := %d)`, protoBuckets),
	`CREATE TABLE proto_buckets (key bigint PRIMARY KEY, bucket int NOT NULL, cycle bigint NOT NULL DEFAULT 0, seed bigint NOT NULL DEFAULT 0)`,
	`SELECT create_distributed_table('proto_buckets', 'key', colocate_with := 'proto_users')`,
	`INSERT INTO proto_buckets (key, bucket)
	 SELECT min(id), (row_number() OVER (ORDER BY get_shard_id_for_distribution_column('proto_users', min(id))) - 1)::int
	 FROM generate_series(1::bigint, 100000) id
	 GROUP BY get_shard_id_for_distribution_column('proto_users', id)`,
	`CREATE OR REPLACE FUNCTION draw_shard(key bigint, c bigint, s bigint) RETURNS bigint LANGUAGE plpgsql AS $$
	DECLARE n bigint;
	BEGIN
		UPDATE proto_buckets b SET cycle = c, seed = s WHERE b.key = draw_shard.key AND b.cycle < c;
		IF NOT FOUND THEN RETURN 0; END IF;
		EXECUTE format('UPDATE %s SET points = pointsd_draw(id, $1), updated_at = now()',
			shard_name('proto_users'::regclass, get_shard_id_for_distribution_column('proto_users', key))) USING s;
		GET DIAGNOSTICS n = ROW_COUNT;
		RETURN n;
	END $$`,
	`SELECT create_distributed_function('draw_shard(bigint,bigint,bigint)', 'key',
		colocate_with := 'proto_users', force_delegation := true)`,
}

// oneWorkerBuckets builds the prototype beside pointsd's tables, seeds it
// with as many users, and runs rolling cycles the way the updater does
// (two workers, each bucket in its own transaction) and strict cycles (one
// distributed transaction), checking every user after each.
func oneWorkerBuckets(ctx context.Context, c config, url string) error {
	log.Print("prototype: buckets that live on one worker")
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, s := range protoSchema {
		if _, err := pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("prototype schema: %w", err)
		}
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for lo := int64(1); lo <= c.users; lo += 50_000 {
		g.Go(func() error {
			_, err := pool.Exec(gctx, `INSERT INTO proto_users (id) SELECT g FROM generate_series($1::bigint, $2::bigint) g`, lo, min(lo+49_999, c.users))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	seed := time.Since(start)
	rows, err := pool.Query(ctx, `SELECT key FROM proto_buckets ORDER BY bucket`)
	if err != nil {
		return err
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	var rollings, works, p50s, maxes, stricts []time.Duration
	for cycle := int64(1); cycle <= int64(2*c.cycles); cycle++ {
		s := cycle * 7919
		if cycle%2 == 0 { // strict: one distributed transaction
			t := time.Now()
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `UPDATE proto_buckets SET cycle = $1, seed = $2`, cycle, s); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE proto_users SET points = pointsd_draw(id, $1), updated_at = now()`, s)
				return err
			})
			if err != nil {
				return err
			}
			stricts = append(stricts, time.Since(t))
		} else {
			took, work, p50, mx, err := protoRolling(ctx, pool, keys, cycle, s)
			if err != nil {
				return err
			}
			rollings, works, p50s, maxes = append(rollings, took), append(works, work), append(p50s, p50), append(maxes, mx)
		}
		var off, total int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE points <> pointsd_draw(id, $1)), count(*) FROM proto_users`, s).Scan(&off, &total); err != nil {
			return err
		}
		if off != 0 || total != c.users {
			return fmt.Errorf("prototype cycle %d: %d of %d users off the draw", cycle, off, total)
		}
		log.Printf("  prototype cycle %d: every user drawn", cycle)
	}
	fmt.Fprintf(c.out, "Prototype, buckets that each live on one worker (%d shards = %d buckets, claim and rewrite delegated to the shard's worker, no two-phase commit), %d users, every user checked after each cycle: seed %v; rolling cycle (2 workers, unpaced) %s, work %s, bucket p50 / max %s; strict (one distributed transaction) %s.\n\n",
		protoBuckets, protoBuckets, c.users, seed.Round(time.Millisecond), durations(rollings), durations(works),
		pairs(p50s, maxes), durations(stricts))
	_, err = pool.Exec(ctx, `DROP TABLE proto_users, proto_buckets`)
	return err
}

// protoRolling rewrites every prototype bucket, each in its own
// transaction, two at a time, as the updater's rolling cycle does.
func protoRolling(ctx context.Context, pool *pgxpool.Pool, keys []int64, cycle, seed int64) (took, work, p50, mx time.Duration, err error) {
	start := time.Now()
	jobs := make(chan int64)
	var mu sync.Mutex
	var times []time.Duration
	g, gctx := errgroup.WithContext(ctx)
	for range 2 {
		g.Go(func() error {
			for k := range jobs {
				t := time.Now()
				err := pgx.BeginFunc(gctx, pool, func(tx pgx.Tx) error {
					var n int64
					return tx.QueryRow(gctx, `SELECT draw_shard($1, $2, $3)`, k, cycle, seed).Scan(&n)
				})
				if err != nil {
					return err
				}
				mu.Lock()
				times = append(times, time.Since(t))
				mu.Unlock()
			}
			return nil
		})
	}
feed:
	for _, k := range keys {
		select {
		case jobs <- k:
		case <-gctx.Done():
			break feed
		}
	}
	close(jobs)
	if err := g.Wait(); err != nil {
		return 0, 0, 0, 0, err
	}
	took = time.Since(start)
	for _, d := range times {
		work += d
	}
	slices.Sort(times)
	return took, work, times[len(times)/2], times[len(times)-1], nil
}

func pairs(a, b []time.Duration) string {
	s := ""
	for i := range a {
		if i > 0 {
			s += ", "
		}
		s += a[i].Round(100*time.Microsecond).String() + " / " + b[i].Round(100*time.Microsecond).String()
	}
	return s
}
