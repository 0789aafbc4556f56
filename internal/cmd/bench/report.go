package main

import (
	"context"
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

// report is everything measured, and writes BENCHMARKS.md.
type report struct {
	cfg     config
	started time.Time
	took    time.Duration

	seedPlain, seedPointsd time.Duration
	updates                []*updateRun // strict, classic, ranges
	spread                 []*spreadRun // strict, rolling
	throughput             []throughputRun
	peakRSS                int64
}

func (r *report) write(ctx context.Context, c config) error {
	//nolint:gosec // G301: docs/, a folder of the repository
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if err := r.plots(c.out); err != nil {
		return err
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	pgVersion := "unknown"
	if pool, err := openPool(ctx, c.dbURL, 1); err == nil {
		_ = pool.QueryRow(ctx, `SELECT version()`).Scan(&pgVersion)
		pool.Close()
	}
	p("# pointsd benchmarks\n\n")
	p("Measured by `make bench` on %s (took %s): pointsd and the classic approach side by side, in one run, on one machine. ",
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second))
	p("Absolute numbers drift with the machine's load; the ratios, measured in the same run, are what to compare.\n\n")
	p("- Machine: %d cores (%s), %s of memory\n- %s\n- %d users; %d full updates per approach; load-spread periods of %s at %d requests/s\n\n",
		runtime.NumCPU(), host.CPUModel(), host.MemTotal(), pgVersion, c.users, c.cycles, c.period, c.rate)

	p("## Targets\n\n| target | measured | |\n| --- | --- | --- |\n")
	strict, classic := r.updates[0], r.updates[1]
	steady := func(u *updateRun) time.Duration { return median(u.took[len(u.took)/2:]) }
	ratio := steady(strict).Seconds() / steady(classic).Seconds()
	p("| steady-state strict cycle ≤ 0.35× the classic UPDATE | %.2f× (%s vs %s, medians of cycles %d–%d) | %s |\n",
		ratio, steady(strict).Round(time.Millisecond), steady(classic).Round(time.Millisecond), len(strict.took)/2+1, len(strict.took), met(ratio <= 0.35))
	growth := float64(strict.bytes[len(strict.bytes)-1]) / float64(strict.bytes[0])
	p("| table after cycle %d ≤ 1.1× after cycle 1 | %.2f× (%s → %s) | %s |\n",
		len(strict.bytes), growth, mb(strict.bytes[0]), mb(strict.bytes[len(strict.bytes)-1]), met(growth <= 1.1))
	rolling := r.spread[1]
	spike := worstP99(rolling.seconds).Seconds() / medianP99(rolling.seconds).Seconds()
	control := r.spread[2]
	p("| rolling: worst second's p99 ≤ 1.5× the median second's | %.2f× (%s vs %s; the static control: %.2f×) | %s |\n",
		spike, ms(worstP99(rolling.seconds)), ms(medianP99(rolling.seconds)),
		worstP99(control.seconds).Seconds()/medianP99(control.seconds).Seconds(), met(spike <= 1.5))
	pd, static := r.throughput[0], r.throughput[1]
	share := pd.rps / static.rps
	p("| GET / with the cluster's previous-query time ≥ 90%% of a static Go handler's requests/s | %.0f%% (%.0f vs %.0f req/s) | %s |\n", 100*share, pd.rps, static.rps, met(share >= 0.90))
	fresh := r.throughput[3]
	first := fresh.rps / pd.rps
	p("| GET / in the first period after start ≥ 50%% of steady state | %.0f%% (%.0f vs %.0f req/s; p99 %s vs %s) | %s |\n",
		100*first, fresh.rps, pd.rps, ms(fresh.p99), ms(pd.p99), met(first >= 0.5))
	p("| query-time exchange ≤ 10 writes/s per replica while queried (one per 100 ms at most) | %.1f writes/s | %s |\n", pd.publishes, met(pd.publishes <= 10.5))
	p("| peak RSS during the throughput run < 64 MB | %s | %s |\n\n", mb(r.peakRSS), met(r.peakRSS < 64<<20))

	p("## 1. Full update of %d users, steady state\n\n", c.users)
	p("Each cycle rewrites every user's points. pointsd's strict cycle is one transaction over the hash-partitioned, fillfactor-45 table (every update HOT); ")
	p("the classic approach is `UPDATE users SET points = floor(random()*101)` on a bigserial-keyed table at the default fillfactor; ")
	p("the parallel variant updates that table in 1,000-id ranges on two connections. The three take turns, cycle by cycle.\n\n")
	p("![time per cycle](update_time.svg)\n\n![table size](table_size.svg)\n\n")
	p("| approach | cycle 1 | median of cycles %d–%d | size after cycle 1 | after cycle %d |\n| --- | --- | --- | --- | --- |\n", len(strict.took)/2+1, len(strict.took), len(strict.took))
	for _, u := range r.updates {
		p("| %s | %s | %s | %s | %s |\n", u.name, u.took[0].Round(time.Millisecond), steady(u).Round(time.Millisecond), mb(u.bytes[0]), mb(u.bytes[len(u.bytes)-1]))
	}

	p("\n## 2. Spread of load\n\n")
	p("A constant open-loop load of %d `GET /` per second (latency measured from each request's scheduled time) over two full periods of %s, ", c.rate, c.period)
	p("first with `-mode strict`, then `-mode rolling` (cycles start at seconds 0 and %d), then on a static Go handler as a control: ", int(c.period.Seconds()))
	p("the noise of this machine and of the load generator sharing its two cores, with neither pointsd nor the database in the path. ")
	p("Per second: p50 and p99 latency, and the WAL the database wrote.\n\n")
	p("![p99 per second](latency.svg)\n\n![WAL per second](wal.svg)\n\n")
	p("| mode | median second p50 | median second p99 | worst second p99 | worst / median p99 | peak WAL/s | errors |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.spread {
		var errs int
		p50s := make([]time.Duration, len(s.seconds))
		for i, x := range s.seconds {
			errs += x.Errors
			p50s[i] = x.P50
		}
		p("| %s | %s | %s | %s | %.2f× | %s | %d |\n", s.mode, ms(median(p50s)), ms(medianP99(s.seconds)), ms(worstP99(s.seconds)),
			worstP99(s.seconds).Seconds()/medianP99(s.seconds).Seconds(), mb(int64(maxF(s.walBytes))), errs)
	}

	p("\n<details><summary>Per second</summary>\n\n| second |")
	for _, s := range r.spread {
		p(" %s p50 | %s p99 | %s WAL |", s.mode, s.mode, s.mode)
	}
	p("\n| --- |%s\n", strings.Repeat(" --- | --- | --- |", len(r.spread)))
	for i := range r.spread[0].seconds {
		p("| %d |", i)
		for _, s := range r.spread {
			var wal float64
			if i < len(s.walBytes) {
				wal = s.walBytes[i]
			}
			p(" %s | %s | %s |", ms(s.seconds[i].P50), ms(s.seconds[i].P99), mb(int64(wal)))
		}
		p("\n")
	}
	p("\n</details>\n")

	p("\n## 3. Throughput of `GET /`\n\n`wrk -t2 -c64 -d10s` on pointsd and on a static Go `net/http` handler returning the same bytes (two runs each, alternating, averaged); ")
	p("`pgbench -M prepared -c 8 -j 2 -T 10` running the query's SQL with a random floor. ")
	p("The first row's server has run rolling cycles; the last row's was started on a freshly seeded database (every user at 0 points, no cycle yet, `-period 1h`) and measured before its first cycle.\n\n| server | requests/s | p99 | vs static |\n| --- | --- | --- | --- |\n")
	for _, t := range r.throughput {
		p("| %s | %.0f | %s | %.0f%% |\n", t.name, t.rps, ms(t.p99), 100*t.rps/static.rps)
	}
	p("\nGET / answers the cluster's previous-query time (the default, `-query-time cluster`): during its runs pointsd wrote its latest query time %.1f times a second (`%s`), and none per request.\n", pd.publishes, publishesMetric)
	p("\n## 4. Seeding %d users\n\n| method | median of 3 |\n| --- | --- |\n", c.users)
	p("| plain `INSERT … SELECT generate_series` into an unpartitioned table | %s |\n", r.seedPlain.Round(time.Millisecond))
	p("| `pointsd seed` (60 partitions, 2 connections) | %s (%.2f×) |\n", r.seedPointsd.Round(time.Millisecond), r.seedPointsd.Seconds()/r.seedPlain.Seconds())
	p("\n## 5. Memory\n\npointsd's peak resident memory (VmHWM) after the throughput run: %s.\n", mb(r.peakRSS))
	if paced := section(c.out, "BENCHMARKS-SCALE.md", "`serve -period"); paced != "" {
		p("\n## 6. At scale\n\nFrom [BENCHMARKS-SCALE.md](BENCHMARKS-SCALE.md), written by the same `make bench` just before (the cost curve from 1M to 10M users, and the settings, are there):\n\n%s", paced)
	}
	if citus := strings.TrimSpace(section(c.out, "CITUS.md", "One PostgreSQL beside Citus, 1M") + "\n" +
		section(c.out, "CITUS.md", "One PostgreSQL beside Citus, 10M")); citus != "" {
		p("\n## 7. On Citus\n\nFrom [CITUS.md](CITUS.md), written by hand from `make citusbench` runs (it needs Citus installed; see there for the commands and what the figures show):\n\n%s\n", citus)
	}
	p("\n## Reproduce\n\n```sh\nmake bench\n```\n\nIt runs `make bench-scale` first (BENCHMARKS-SCALE.md), then starts its own PostgreSQL under `./.data/bench`, installs `wrk` when missing (Debian), and rewrites this file and its plots.\n")
	return os.WriteFile(filepath.Join(c.out, "BENCHMARKS.md"), []byte(b.String()), 0o644) //nolint:gosec // G306: a document of the repository, for everyone to read
}

func (r *report) plots(dir string) error {
	lines := func(title, x, y, file string, series map[string][]float64, order []string) error {
		pl := plot.New()
		pl.Title.Text, pl.X.Label.Text, pl.Y.Label.Text = title, x, y
		pl.Y.Min = 0
		var args []any
		for _, name := range order {
			pts := make(plotter.XYs, len(series[name]))
			for i, v := range series[name] {
				pts[i] = plotter.XY{X: float64(i + 1), Y: v}
			}
			args = append(args, name, pts)
		}
		if err := plotutil.AddLinePoints(pl, args...); err != nil {
			return err
		}
		pl.Legend.Top = true
		return pl.Save(18*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, file))
	}
	upd, size := map[string][]float64{}, map[string][]float64{}
	var names []string
	for _, u := range r.updates {
		names = append(names, u.name)
		for i := range u.took {
			upd[u.name] = append(upd[u.name], u.took[i].Seconds())
			size[u.name] = append(size[u.name], float64(u.bytes[i])/(1<<20))
		}
	}
	if err := lines("Full update of every user", "cycle", "seconds", "update_time.svg", upd, names); err != nil {
		return err
	}
	if err := lines("Table size after each cycle", "cycle", "MiB", "table_size.svg", size, names); err != nil {
		return err
	}
	lat, wal := map[string][]float64{}, map[string][]float64{}
	names = nil
	for _, s := range r.spread {
		names = append(names, s.mode)
		for i, x := range s.seconds {
			lat[s.mode] = append(lat[s.mode], float64(x.P99.Microseconds())/1000)
			if i < len(s.walBytes) {
				wal[s.mode] = append(wal[s.mode], s.walBytes[i]/(1<<20))
			}
		}
	}
	if err := lines("GET / p99 per second under a constant load", "second", "p99 (ms)", "latency.svg", lat, names); err != nil {
		return err
	}
	return lines("WAL written per second", "second", "MiB", "wal.svg", wal, names)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func mb(n int64) string         { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func maxF(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// section is the section of dir/file whose heading contains heading, its
// heading one level down; "" if there is none.
func section(dir, file, heading string) string {
	b, err := os.ReadFile(filepath.Join(dir, file)) //nolint:gosec // a report beside this one
	if err != nil {
		return ""
	}
	for _, sec := range strings.Split(string(b), "\n## ")[1:] {
		h, _, _ := strings.Cut(sec, "\n")
		if strings.Contains(h, heading) {
			return "### " + strings.TrimRight(sec, "\n") + "\n"
		}
	}
	return ""
}
