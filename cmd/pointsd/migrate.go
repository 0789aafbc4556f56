package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pointsd/pointsd/pgsql"
)

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "[-partitions N]",
		"Creates or upgrades the schema, and repairs what was damaged by hand where it can (a dropped\n"+
			"partition, the deleted state row, a cycle number set back). Idempotent, and safe when replicas\n"+
			"run it at once.")
	partitions := fs.Int("partitions", pgsql.DefaultPartitions,
		fmt.Sprintf("users partitions (rolling buckets), 1..%d; fixed when the table is created", pgsql.MaxPartitions))
	wait := addWait(fs)
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if *partitions < 1 || *partitions > pgsql.MaxPartitions {
		return usageError{fmt.Sprintf("pointsd migrate: -partitions must be between 1 and %d, got %d", pgsql.MaxPartitions, *partitions)}
	}
	pool, err := connect(ctx, getenv, 2, tool("migrate"), *wait)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Unless asked for explicitly, an existing table's count is accepted.
	want := 0
	if isSet(fs, "partitions") {
		want = *partitions
	}
	if err := pgsql.Migrate(ctx, pool, want, nil); err != nil {
		return err
	}
	repaired, err := pgsql.Repair(ctx, pool)
	if err != nil {
		return err
	}
	for _, r := range repaired {
		fmt.Fprintln(stdout, "repaired: "+r)
	}
	cur, _, err := pgsql.SchemaVersion(ctx, pool)
	if err != nil {
		return err
	}
	n, err := pgsql.Partitions(ctx, pool)
	if err != nil {
		return err
	}
	c, err := pgsql.CitusInfo(ctx, pool)
	if err != nil {
		return err
	}
	if c.Distributed {
		fmt.Fprintf(stdout, "schema at version %d, users in %d partitions, distributed by Citus over %d workers\n", cur, n, c.Workers)
		for _, w := range c.Warnings() {
			fmt.Fprintln(stdout, "warning: "+w)
		}
		return nil
	}
	fmt.Fprintf(stdout, "schema at version %d, users in %d partitions\n", cur, n)
	return nil
}
