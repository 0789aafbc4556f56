package main

import (
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/pointsd/pointsd/internal/host"
	"github.com/pointsd/pointsd/partition"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

func runSize(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("size", "-users N [-period D] [-db-cores C] [-db-memory-gib G] [-work-per-user D] [-wal-per-user B]",
		"Prints the partitions, workers and PostgreSQL settings to start from for N users re-drawn\n"+
			"every period, and whether one PostgreSQL primary can keep up. The per-user costs default to\n"+
			"this project's benchmark machine's (docs/BENCHMARKS-SCALE.md); measure yours with pointsd cycle.")
	users := fs.Int64("users", 0, "users to size for (required)")
	period := fs.Duration("period", time.Minute, "the period every user is re-drawn in")
	cores := fs.Int("db-cores", runtime.NumCPU(), "the database server's cores; the default is this machine's")
	memGiB := fs.Float64("db-memory-gib", float64(host.MemBytes())/(1<<30), "the database server's memory in GiB; the default is this machine's")
	work := fs.Duration("work-per-user", partition.MeasuredCosts.Work, "database time to rewrite one user in a rolling bucket")
	wal := fs.Float64("wal-per-user", partition.MeasuredCosts.WAL, "WAL bytes one user's rewrite writes")
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	periodErr := updater.ValidatePeriod(*period)
	switch {
	case *users < 1:
		return usageError{"pointsd size: -users must be at least 1 (see pointsd size -h)"}
	case periodErr != nil:
		return usageError{"pointsd size: -period " + periodErr.Error()}
	case *memGiB <= 0 && !isSet(fs, "db-memory-gib"):
		return usageError{"pointsd size: this machine's memory is unknown (no /proc/meminfo): give -db-memory-gib"}
	case *cores < 1 || *memGiB <= 0 || *work <= 0 || *wal <= 0:
		return usageError{"pointsd size: -db-cores, -db-memory-gib, -work-per-user and -wal-per-user must be positive"}
	}
	costs := partition.MeasuredCosts
	costs.Work, costs.WAL = *work, *wal
	s := partition.Size(*users, *period, *cores, *memGiB*(1<<30), costs, pgsql.DefaultPartitions, pgsql.MaxPartitions)

	fmt.Fprintf(stdout, "%d users re-drawn every %v on a database of %d cores and %.1f GiB:\n\n", s.Users, s.Period, *cores, *memGiB)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	row("users table", "%s", gib(s.TableBytes))
	row("a cycle's work", "%.1f s of database time (%v a user)", s.Work.Seconds(), costs.Work)
	row("partitions", "%d: a bucket takes about %v (pointsd migrate -partitions %d, when the table is created)",
		s.Partitions, s.Bucket.Round(time.Millisecond), s.Partitions)
	row("workers", "%d (serve -workers %d): busy %.0f%% of the period", s.Workers, s.Workers,
		100*s.Work.Seconds()/float64(s.Workers)/s.Period.Seconds())
	row("WAL", "%s a cycle, %s/s", gib(s.WALPerCycle), mib(s.WALPerCycle/s.Period.Seconds()))
	row("PostgreSQL", "shared_buffers = %dMB, max_wal_size = %dGB", int64(s.SharedBuffers)>>20, int64(s.MaxWALSize+(1<<30)-1)>>30)
	if s.FitsOneNode {
		row("one primary", "fits: %d of %d cores busy at most 3/4 of the period", s.Workers, *cores)
	} else {
		row("one primary", "does NOT fit: %d workers needed on %d cores; see docs/SCALING.md (Citus)", s.Workers, *cores)
	}
	return tw.Flush()
}

func gib(b float64) string { return fmt.Sprintf("%.2f GiB", b/(1<<30)) }
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
