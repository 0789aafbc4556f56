package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/pgsql"
)

func runMode(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mode", "[flags] [rolling|strict]",
		"Prints the cluster's update mode, the running cycle's mode, whether a pointsd serve leads and\n"+
			"when the next cycle starts. With rolling or strict, sets the cluster's mode: the leader runs\n"+
			"the next cycle in it, a cycle in flight keeps its mode, and no replica needs a restart.")
	wait := addWait(fs)
	if err := parseFlagsArgs(fs, args, getenv, stdout, 1); err != nil {
		return err
	}
	var mode pointsd.Mode
	set := fs.NArg() == 1
	if set {
		if err := mode.UnmarshalText([]byte(fs.Arg(0))); err != nil {
			return usageError{fmt.Sprintf("pointsd mode: invalid mode %q: %v", fs.Arg(0), err)}
		}
	}
	pool, err := connect(ctx, getenv, 2, tool("mode"), *wait)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := requireSchema(ctx, pool); err != nil {
		return err
	}
	if set {
		from, err := pgsql.SetClusterMode(ctx, pool, mode)
		if err != nil {
			return err
		}
		st, err := pgsql.ReadState(ctx, pool)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "cluster mode set to %s: it applies from cycle %d, the next to start (%s)\n",
			mode, from, nextStart(st, time.Now()))
		return nil
	}
	st, err := pgsql.ReadState(ctx, pool)
	if err != nil {
		return err
	}
	leader, err := pgsql.LeaderPID(ctx, pool)
	if err != nil {
		return err
	}
	progress := "finished"
	if st.FinishedAt == nil {
		progress = "running"
	}
	lead := "none: no pointsd serve leads, so no cycle runs"
	if leader != 0 {
		lead = fmt.Sprintf("a pointsd serve leads (server pid %d)", leader)
	}
	fmt.Fprintf(stdout, "cluster mode:  %s\n", st.ClusterMode)
	fmt.Fprintf(stdout, "current cycle: %d (%s), started %s, %d of %d buckets, %s\n",
		st.Cycle, st.Mode, st.StartedAt.UTC().Format(time.DateTime+" MST"), st.BucketsDone, st.BucketsTotal, progress)
	fmt.Fprintf(stdout, "leader:        %s\n", lead)
	fmt.Fprintf(stdout, "next cycle:    %s\n", nextStart(st, time.Now()))
	return nil
}

// nextStart says when the next cycle starts, as the leader published it.
func nextStart(st pointsd.State, now time.Time) string {
	if st.NextStart == nil {
		return "not scheduled: no leader has published its schedule"
	}
	at := st.NextStart.UTC().Format(time.DateTime + " MST")
	if d := st.NextStart.Sub(now); d > 0 {
		return fmt.Sprintf("at %s, in %s", at, d.Round(time.Second))
	}
	return fmt.Sprintf("due since %s", at)
}
