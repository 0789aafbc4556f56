package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

func runCycle(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cycle", "[-mode strict|rolling] [-workers W]",
		"Runs one update cycle now (rolling: the buckets back to back, no pacing), prints its duration, exits.\n"+
			"Refuses to run while a pointsd serve leads: its cycles already run.")
	var mode pointsd.Mode // none: the cluster's mode
	fs.TextVar(&mode, "mode", mode, "update mode: rolling (one transaction per bucket) or strict (one transaction);\nwhen not given, the cluster's mode (see pointsd mode)")
	workers := fs.Int("workers", updater.DefaultWorkers, fmt.Sprintf("rolling: buckets updated at once, 1..%d", updater.MaxWorkers))
	level := addLogLevel(fs)
	wait := addWait(fs)
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if err := updater.ValidateWorkers(*workers); err != nil {
		return usageError{"pointsd cycle: -workers " + err.Error()}
	}
	conns := int32(*workers + 2) //nolint:gosec // G115: ValidateWorkers keeps it to 1..MaxWorkers
	pool, err := connect(ctx, getenv, conns, session{name: "pointsd-cycle", direct: true, limits: updater.SessionLimits(updater.DefaultPeriod)}, *wait)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := requireSchema(ctx, pool); err != nil {
		return err
	}
	// Hold the leader lock for the cycle, so no serve leader runs one too.
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack() // closing it releases the lock
	defer func() { _ = conn.Close(context.Background()) }()
	ok, err := pgsql.TryLeaderLock(ctx, conn)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("a pointsd serve is leading and runs the cycles: stop it to run one by hand")
	}

	u, err := updater.New(updater.Config{Pool: pool, Metrics: metrics.New(), Logger: newLogger(stderr, level.Level),
		Mode: mode, Workers: *workers})
	if err != nil {
		return err
	}
	res, err := u.RunCycle(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cycle %d (%s): %d users in %d buckets in %s",
		res.Cycle, res.Mode, res.Rows, res.Buckets, res.Took.Round(time.Millisecond))
	if res.Mode == pointsd.Rolling {
		fmt.Fprintf(stdout, " (bucket p50 %s, max %s)", res.BucketP50.Round(time.Millisecond), res.BucketMax.Round(time.Millisecond))
	}
	fmt.Fprintln(stdout)
	return nil
}
