package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/pointsd/pointsd/internal/host"
)

// fitShare is the part of a period a rolling cycle's unpaced span may take
// for this machine to be said to fit it "with room to spare".
const fitShare = 0.75

// write writes BENCHMARKS-SCALE.md and its plot into dir.
func (r *scaleReport) write(dir string) error {
	//nolint:gosec // G301: docs/, a folder of the repository
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := r.plot(dir); err != nil {
		return err
	}
	m := benchMachine{cores: runtime.NumCPU(), cpu: host.CPUModel(), mem: host.MemTotal(), goVersion: runtime.Version()}
	//nolint:gosec // G306: a document of the repository, readable by all
	return os.WriteFile(filepath.Join(dir, "BENCHMARKS-SCALE.md"), []byte(r.markdown(m)), 0o644)
}

// markdown renders BENCHMARKS-SCALE.md from the run and the machine.
func (r *scaleReport) markdown(m benchMachine) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# pointsd at scale: the cost curve\n\n")
	p("Written by `make bench-scale` on %s, in %s: %d cores (%s), %s of memory, %s, PostgreSQL from the machine's binaries, %s.\n",
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second), m.cores, m.cpu,
		m.mem, m.goVersion, tuned.about)
	p("Every figure comes from this one run; the machine is shared, so compare within a table, not across runs.\n\n")

	p("## What a cycle costs as users grow\n\n")
	p("Settings: %s. Seed: `pointsd seed` (chunks on two connections) beside one plain `INSERT … SELECT generate_series` into the same table. ", tuned.about)
	p("Strict: the one transaction. Rolling: unpaced (buckets back to back, two workers): *work* is the sum of the bucket transactions, *span* its wall time. ")
	p("CPU is every PostgreSQL process of the server (backends, WAL writer, checkpointer, autovacuum), from /proc; WAL from `pg_current_wal_lsn()`. Each cycle ran twice; the second is kept.\n\n")
	p("| users | seed | plain INSERT | table | strict | rolling work | rolling span | bucket p50 / max | CPU strict / rolling | WAL strict / rolling | checkpoints |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|\n")
	var base []scaleRun
	for _, x := range r.runs {
		if x.profile != tuned.name {
			continue
		}
		base = append(base, x)
		p("| %s | %s | %s | %s → %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %d / %d |\n", millions(x.users),
			secs(x.seed), secs(x.plainSeed), mb(x.tableBytes), mb(x.tableAfter), secs(x.strict.span), secs(x.rolling.work),
			secs(x.rolling.span), ms(x.rolling.bucketP50), ms(x.rolling.bucketMax), secs(x.strict.cpu), secs(x.rolling.cpu),
			mb(x.strict.wal), mb(x.rolling.wal), x.strict.checkpoints, x.rolling.checkpoints)
	}
	p("\n![cost against users](scale_cost.svg)\n\n")
	p("Per user and cycle:\n\n| users | strict | rolling work | CPU (rolling) | WAL (rolling) |\n|---|---|---|---|---|\n")
	for _, x := range base {
		p("| %s | %.2f µs | %.2f µs | %.2f µs | %.0f B |\n", millions(x.users), perUser(x.strict.span, x.users),
			perUser(x.rolling.work, x.users), perUser(x.rolling.cpu, x.users), float64(x.rolling.wal)/float64(x.users))
	}
	if len(base) >= 2 {
		lo, hi := base[0], base[len(base)-1]
		p("\nFrom %s to %s users (%.0f×), rolling work per user changed %.2f×, strict %.2f×, WAL per user %.2f×: ",
			millions(lo.users), millions(hi.users), float64(hi.users)/float64(lo.users),
			perUser(hi.rolling.work, hi.users)/perUser(lo.rolling.work, lo.users),
			perUser(hi.strict.span, hi.users)/perUser(lo.strict.span, lo.users),
			(float64(hi.rolling.wal)/float64(hi.users))/(float64(lo.rolling.wal)/float64(lo.users)))
		p("a ratio near 1 is a cost linear in users.\n")
		// The limit: the unpaced rolling span is what the cycle needs of
		// the period with two workers.
		spanPerUser := hi.rolling.span.Seconds() / float64(hi.users)
		p("\n**This machine's limit.** An unpaced rolling cycle over %s users spans %s with two workers: %.2f µs per user. ",
			millions(hi.users), secs(hi.rolling.span), spanPerUser*1e6)
		p("Keeping that under %.0f%% of the period (room for the reserve, the queries and jitter), this machine fits about **%s users in a 1 m period** and %s in a 30 s one.\n",
			fitShare*100, millions(int64(fitShare*60/spanPerUser)), millions(int64(fitShare*30/spanPerUser)))
	}

	p("\n## PostgreSQL settings\n\n")
	p("The same database restarted under each set of settings; the cycles after a restart were run twice and the second kept.\n\n")
	p("| users | settings | strict | rolling work | rolling span | WAL strict | checkpoints strict / rolling |\n|---|---|---|---|---|---|---|\n")
	for _, x := range r.runs {
		if x.profile == tuned.name && !r.comparedAt(x.users) {
			continue
		}
		p("| %s | %s | %s | %s | %s | %s | %d / %d |\n", millions(x.users), x.profile, secs(x.strict.span), secs(x.rolling.work),
			secs(x.rolling.span), mb(x.strict.wal), x.strict.checkpoints, x.rolling.checkpoints)
	}
	p("\nProfiles: **tuned** is %s; **defaults** is %s; **large buffers** is %s.\n", tuned.about, defaults.about, large.about)

	if x := r.paced; x != nil {
		p("\n## %s users, `serve -period %v`, under load\n\n", millions(x.users), x.period)
		p("The tuned server; `pointsd serve -period %v` ran %d rolling cycles while wrk (64 connections, 10 s) hit GET / and a static Go handler returning the same bytes, in turns, twice each, during the cycles.\n\n", x.period, x.cycles)
		p("| cycles | overruns | late starts | boundaries skipped | longest span | least room before the boundary | spread | rolling work (mean) |\n|---|---|---|---|---|---|---|---|\n")
		p("| %d | %d | %d | %d | %s | %s | %s | %s |\n\n", x.cycles, x.overruns, x.late, x.skipped, secs(x.spanMax),
			secs(x.endMargin), secs(x.spread), secs(x.work))
		ratio := x.pointsd.rps / x.static.rps
		p("| GET / during rolling cycles | static handler | ratio |\n|---|---|---|\n| %.0f req/s, p99 %s | %.0f req/s, p99 %s | %.0f%% |\n\n",
			x.pointsd.rps, ms(x.pointsd.p99), x.static.rps, ms(x.static.p99), 100*ratio)
		p("Targets: no overrun at %v — **%s**; GET / at least 60%% of the static handler during a rolling cycle — **%s**.\n",
			x.period, met(x.overruns == 0 && x.skipped == 0), met(ratio >= 0.6))
	}
	p("\n## Reproduce\n\n```sh\nmake bench-scale\n```\n\nIt starts its own PostgreSQL under `./.data/scale` (and restarts it to change settings), and rewrites this file and its plot. Sizes: `bin/bench -scale 1000000,3000000,10000000`.\n")
	return b.String()
}

// comparedAt reports whether other profiles ran at n users.
func (r *scaleReport) comparedAt(n int64) bool {
	for _, x := range r.runs {
		if x.users == n && x.profile != tuned.name {
			return true
		}
	}
	return false
}

func (r *scaleReport) plot(dir string) error {
	pl := plot.New()
	pl.Title.Text, pl.X.Label.Text, pl.Y.Label.Text = "A cycle's cost against users (tuned settings)", "users (millions)", "seconds"
	pl.X.Min, pl.Y.Min = 0, 0
	series := map[string]plotter.XYs{}
	order := []string{"strict", "rolling work", "rolling span (2 workers)"}
	for _, x := range r.runs {
		if x.profile != tuned.name {
			continue
		}
		m := float64(x.users) / 1e6
		series[order[0]] = append(series[order[0]], plotter.XY{X: m, Y: x.strict.span.Seconds()})
		series[order[1]] = append(series[order[1]], plotter.XY{X: m, Y: x.rolling.work.Seconds()})
		series[order[2]] = append(series[order[2]], plotter.XY{X: m, Y: x.rolling.span.Seconds()})
	}
	var args []any
	for _, name := range order {
		args = append(args, name, series[name])
	}
	if err := plotutil.AddLinePoints(pl, args...); err != nil {
		return err
	}
	pl.Legend.Top, pl.Legend.Left = true, true
	return pl.Save(18*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, "scale_cost.svg"))
}

func millions(n int64) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func perUser(d time.Duration, users int64) float64 {
	return float64(d.Nanoseconds()) / 1e3 / float64(users)
}
