package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/pointsd/pointsd/pgsql"
)

// seedWorkers is the number of connections inserting at once: the INSERT is
// CPU-bound in the server, and two beat one on the 2-core machines we run on.
const seedWorkers = 2

func runSeed(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("seed", "[-users N]",
		"Makes exactly N users exist (ids 1..N, 0 points), adding only the missing ones.")
	users := fs.Int64("users", 1_000_000, "number of users, 1..1000000000")
	wait := addWait(fs)
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if *users < 1 || *users > pgsql.MaxUsers {
		return usageError{fmt.Sprintf("pointsd seed: -users must be between 1 and %d, got %d", pgsql.MaxUsers, *users)}
	}
	pool, err := connect(ctx, getenv, seedWorkers, tool("seed"), *wait)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := requireSchema(ctx, pool); err != nil {
		return err
	}

	var progress func(added, missing int64)
	if isTerminal(stderr) {
		var bar *progressbar.ProgressBar
		progress = func(added, missing int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(missing,
					progressbar.OptionSetWriter(stderr),
					progressbar.OptionSetDescription("adding users"),
					progressbar.OptionShowCount(),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
				)
			}
			_ = bar.Set64(added)
		}
	}
	start := time.Now()
	res, err := pgsql.Seed(ctx, pool, *users, seedWorkers, progress)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d users (%d existed, %d added) in %s\n",
		res.Existing+res.Added, res.Existing, res.Added, time.Since(start).Round(time.Millisecond))
	return nil
}
