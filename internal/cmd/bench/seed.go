package main

import (
	"context"
	"slices"
	"time"

	"github.com/pointsd/pointsd/pgsql"
)

// benchSeed times pointsd's seed beside a plain INSERT … SELECT
// generate_series into an unpartitioned table, three rounds, alternating.
// It leaves the database migrated and seeded for the next steps.
func benchSeed(ctx context.Context, c config, r *report) error {
	var plain, seed []time.Duration
	for round := range 3 {
		if round > 0 {
			if err := resetDB(ctx, c.dbURL); err != nil {
				return err
			}
		}
		pool, err := openPool(ctx, c.dbURL, 4)
		if err != nil {
			return err
		}
		if err := pgsql.Migrate(ctx, pool, pgsql.DefaultPartitions, nil); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `CREATE TABLE plain_seed (id bigserial PRIMARY KEY,
			points integer NOT NULL DEFAULT 0, inserted_at timestamp NOT NULL DEFAULT now(),
			updated_at timestamp NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		start := time.Now()
		if _, err := pool.Exec(ctx, `INSERT INTO plain_seed (id) SELECT g FROM generate_series(1, $1::bigint) g`, c.users); err != nil {
			return err
		}
		plain = append(plain, time.Since(start))
		if _, err := pool.Exec(ctx, `DROP TABLE plain_seed; CHECKPOINT`); err != nil {
			return err
		}
		start = time.Now()
		if _, err := pgsql.Seed(ctx, pool, c.users, 2, nil); err != nil {
			return err
		}
		seed = append(seed, time.Since(start))
		pool.Close()
	}
	r.seedPlain, r.seedPointsd = median(plain), median(seed)
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
