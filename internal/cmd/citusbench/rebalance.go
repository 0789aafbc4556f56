package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/internal/localcitus"
)

// rebalance registers the third worker with the cluster, moves shards to
// it with citus_rebalance_start, and runs the cycles again.
func rebalance(ctx context.Context, c config, cl *localcitus.Cluster, url string) error {
	log.Print("adding a third worker and rebalancing")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	start := time.Now()
	if _, err := conn.Exec(ctx, localcitus.AddNodeSQL(cl.Workers[2])); err != nil {
		return err
	}
	added := time.Since(start)
	// block_writes: logical replication (the default for tables with a
	// primary key) needs wal_level = logical, which these servers lack.
	start = time.Now()
	if _, err := conn.Exec(ctx, `SELECT citus_rebalance_start(shard_transfer_mode := 'block_writes')`); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `SELECT citus_rebalance_wait()`); err != nil {
		return err
	}
	moved := time.Since(start)
	rows, err := conn.Query(ctx, `
		SELECT nodeport, count(*), round(sum(shard_size) / 1048576.0)
		FROM citus_shards WHERE table_name::text LIKE 'users%' GROUP BY nodeport ORDER BY nodeport`)
	if err != nil {
		return err
	}
	type placement struct{ Port, Shards, MB int64 }
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[placement])
	if err != nil {
		return err
	}
	r, err := cyclesOnly(ctx, c, "Citus, 3 workers after rebalancing", url)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "Adding a third worker: `citus_add_node` %v; `citus_rebalance_start(shard_transfer_mode := 'block_writes')` then `citus_rebalance_wait()` %v. Shards of users per worker afterwards:",
		added.Round(time.Millisecond), moved.Round(time.Millisecond))
	for _, p := range ps {
		fmt.Fprintf(c.out, " port %d: %d shards, %d MiB;", p.Port, p.Shards, p.MB)
	}
	fmt.Fprintf(c.out, "\n\n| after rebalancing | strict cycle | strict work per user | rolling cycle (unpaced) | rolling work | bucket p50 / max |\n| --- | --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(c.out, "| %s | %s | %.0f ns | %s | %s | %v / %v |\n\n", r.name, durations(r.strict), r.strictPerUserNS,
		durations(r.rolling), durations(r.rollingWork), median(r.bucketP50), median(r.bucketMax))
	return nil
}

// cyclesOnly runs the strict and rolling cycles of measure on an existing,
// seeded database.
func cyclesOnly(ctx context.Context, c config, name, url string) (result, error) {
	r := result{name: name}
	for _, mode := range []string{"strict", "rolling"} {
		for range c.cycles {
			out, errs, err := pointsd(ctx, c, url, "cycle", "-mode", mode)
			if err != nil {
				return r, err
			}
			m, w := cycleLine.FindStringSubmatch(out), workField.FindStringSubmatch(errs)
			if m == nil || w == nil {
				return r, fmt.Errorf("cycle output not understood: %q %q", out, errs)
			}
			took, work := mustDuration(m[1]), mustDuration(w[1])
			log.Printf("  %s %s cycle: %v (work %v)", name, mode, took, work)
			if mode == "strict" {
				r.strict, r.strictWork = append(r.strict, took), append(r.strictWork, work)
				continue
			}
			r.rolling, r.rollingWork = append(r.rolling, took), append(r.rollingWork, work)
			r.bucketP50, r.bucketMax = append(r.bucketP50, mustDuration(m[2])), append(r.bucketMax, mustDuration(m[3]))
		}
	}
	r.strictPerUserNS = float64(median(r.strictWork).Nanoseconds()) / float64(c.users)
	r.rollingWorkPerUserNS = float64(median(r.rollingWork).Nanoseconds()) / float64(c.users)
	return r, nil
}
