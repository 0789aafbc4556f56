package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/updater"
)

// classicTable is the exercise's usual schema: bigserial key, default
// fillfactor (100), and updated by one statement.
const classicTable = `CREATE TABLE %s (
	id bigserial PRIMARY KEY,
	points integer NOT NULL DEFAULT 0,
	inserted_at timestamp(0) NOT NULL DEFAULT now(),
	updated_at timestamp(0) NOT NULL DEFAULT now())`

// updateRun is one approach's per-cycle time and table size.
type updateRun struct {
	name  string
	took  []time.Duration
	bytes []int64
}

// benchUpdates runs the full update of every user c.cycles times per
// approach, interleaved cycle by cycle so that they share the machine's
// moods: pointsd's strict cycle, the classic single UPDATE, and the classic
// table updated in 1,000-id ranges on two connections.
func benchUpdates(ctx context.Context, c config, r *report) error {
	pool, err := openPool(ctx, c.dbURL, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, t := range []string{"classic_users", "classic_ranges"} {
		if _, err := pool.Exec(ctx, fmt.Sprintf(classicTable, t)); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `INSERT INTO `+t+` (id) SELECT g FROM generate_series(1, $1::bigint) g`, c.users); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE `+t); err != nil {
			return err
		}
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE users`); err != nil {
		return err
	}
	u, err := updater.New(updater.Config{Pool: pool, Metrics: metrics.New(), Mode: pointsd.Strict,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}

	strict := &updateRun{name: "pointsd strict cycle"}
	classic := &updateRun{name: "classic UPDATE"}
	ranges := &updateRun{name: "classic in 1,000-id ranges, 2 connections"}
	size := func(table string) (n int64, err error) {
		if table == "users" {
			err = pool.QueryRow(ctx, `SELECT sum(pg_table_size(inhrelid))::bigint FROM pg_inherits WHERE inhparent = 'users'::regclass`).Scan(&n)
		} else {
			err = pool.QueryRow(ctx, `SELECT pg_table_size($1::regclass)`, table).Scan(&n)
		}
		return n, err
	}
	timed := func(run *updateRun, table string, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return err
		}
		run.took = append(run.took, time.Since(start))
		n, err := size(table)
		run.bytes = append(run.bytes, n)
		return err
	}
	for i := range c.cycles {
		if err := timed(strict, "users", func() error { _, err := u.RunCycle(ctx); return err }); err != nil {
			return err
		}
		if err := timed(classic, "classic_users", func() error {
			_, err := pool.Exec(ctx, `UPDATE classic_users SET points = floor(random() * 101), updated_at = now()`)
			return err
		}); err != nil {
			return err
		}
		if err := timed(ranges, "classic_ranges", func() error { return updateRanges(ctx, pool, c.users) }); err != nil {
			return err
		}
		log.Printf("  cycle %d: strict %v, classic %v, ranges %v", i+1,
			strict.took[i].Round(time.Millisecond), classic.took[i].Round(time.Millisecond), ranges.took[i].Round(time.Millisecond))
	}
	r.updates = []*updateRun{strict, classic, ranges}
	return nil
}

// updateRanges is the parallel variant some solutions use: 1,000-id ranges,
// each its own statement (and transaction), on two connections.
func updateRanges(ctx context.Context, pool *pgxpool.Pool, users int64) error {
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range 2 {
		g.Go(func() error {
			for {
				lo := next.Add(1000) - 999
				if lo > users {
					return nil
				}
				if _, err := pool.Exec(ctx, `UPDATE classic_ranges SET points = floor(random() * 101), updated_at = now()
					WHERE id BETWEEN $1 AND $2`, lo, lo+999); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}
