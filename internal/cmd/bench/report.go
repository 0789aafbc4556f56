package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/template"
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
	m := benchMachine{cores: runtime.NumCPU(), cpu: host.CPUModel(), mem: host.MemTotal(), goVersion: runtime.Version(), postgres: "unknown"}
	if pool, err := openPool(ctx, c.dbURL, 1); err == nil {
		_ = pool.QueryRow(ctx, `SELECT version()`).Scan(&m.postgres)
		pool.Close()
	}
	// The sections other reports hold, copied a level down; "" when absent.
	paced := section(c.out, "BENCHMARKS-SCALE.md", "`serve -period")
	citus := strings.TrimSpace(section(c.out, "CITUS.md", "One PostgreSQL beside Citus, 1M") + "\n" +
		section(c.out, "CITUS.md", "One PostgreSQL beside Citus, 10M"))
	md, err := r.markdown(c, m, paced, citus)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.out, "BENCHMARKS.md"), []byte(md), 0o644) //nolint:gosec // G306: a document of the repository, for everyone to read
}

// benchMachine is what the reports say of the machine they ran on.
type benchMachine struct {
	cores                         int
	cpu, mem, goVersion, postgres string
}

// reportTemplateText is BENCHMARKS.md with the run's figures left out.
//
//go:embed report.md.tmpl
var reportTemplateText string

// reportTemplate renders a benchPage.
var reportTemplate = template.Must(template.New("BENCHMARKS.md").
	Funcs(template.FuncMap{"join": strings.Join}).Parse(reportTemplateText))

// benchPage is what report.md.tmpl shows, formatted. A table's rows are
// its cells, in the order of the template's header.
type benchPage struct {
	Started, Took, Machine, PostgreSQL string
	Users                              int64
	Cycles, Rate, PeriodSeconds        int
	Period                             time.Duration
	Targets                            []target
	Steady                             string // the cycles of the steady state, "11–20"
	Updates, Spread, Throughput        [][]string
	Modes                              []string // the spread's, in the per-second table
	PerSecond                          [][]string
	Publishes, PublishesMetric         string // the query-time exchange's writes per second, and its metric
	ClusterCost                        string // a follower with the cluster's time against one per replica
	SeedPlain, SeedPointsd, PeakRSS    string
	Paced, Citus                       string // sections copied from other reports
}

// target is one row of the targets table.
type target struct{ Name, Measured, Met string }

// markdown renders BENCHMARKS.md from the run, the machine, and the
// sections copied from BENCHMARKS-SCALE.md and CITUS.md.
func (r *report) markdown(c config, m benchMachine, paced, citus string) (string, error) {
	strict, classic := r.updates[0], r.updates[1]
	steady := func(u *updateRun) time.Duration { return median(u.took[len(u.took)/2:]) }
	page := benchPage{
		Started: r.started.UTC().Format("2006-01-02 15:04 MST"), Took: r.took.Round(time.Second).String(),
		Machine:    fmt.Sprintf("%d cores (%s), %s of memory", m.cores, m.cpu, m.mem),
		PostgreSQL: m.postgres,
		Users:      c.users, Cycles: c.cycles, Rate: c.rate, Period: c.period, PeriodSeconds: int(c.period.Seconds()),
		Steady: fmt.Sprintf("%d–%d", len(strict.took)/2+1, len(strict.took)),
		Paced:  paced, Citus: citus,
		SeedPlain:   r.seedPlain.Round(time.Millisecond).String(),
		SeedPointsd: fmt.Sprintf("%s (%.2f×)", r.seedPointsd.Round(time.Millisecond), r.seedPointsd.Seconds()/r.seedPlain.Seconds()),
		PeakRSS:     mb(r.peakRSS),
	}

	ratio := steady(strict).Seconds() / steady(classic).Seconds()
	growth := float64(strict.bytes[len(strict.bytes)-1]) / float64(strict.bytes[0])
	rolling, control := r.spread[1], r.spread[2]
	spike := worstP99(rolling.seconds).Seconds() / medianP99(rolling.seconds).Seconds()
	pd, static, fresh := r.throughput[0], r.throughput[1], r.throughput[3]
	share, first := pd.rps/static.rps, fresh.rps/pd.rps
	page.Targets = []target{
		{"steady-state strict cycle ≤ 0.35× the classic UPDATE",
			fmt.Sprintf("%.2f× (%s vs %s, medians of cycles %s)", ratio, steady(strict).Round(time.Millisecond), steady(classic).Round(time.Millisecond), page.Steady),
			met(ratio <= 0.35)},
		{fmt.Sprintf("table after cycle %d ≤ 1.1× after cycle 1", len(strict.bytes)),
			fmt.Sprintf("%.2f× (%s → %s)", growth, mb(strict.bytes[0]), mb(strict.bytes[len(strict.bytes)-1])),
			met(growth <= 1.1)},
		{"rolling: worst second's p99 ≤ 1.5× the median second's",
			fmt.Sprintf("%.2f× (%s vs %s; the static control: %.2f×)", spike, ms(worstP99(rolling.seconds)), ms(medianP99(rolling.seconds)),
				worstP99(control.seconds).Seconds()/medianP99(control.seconds).Seconds()),
			met(spike <= 1.5)},
		{"GET / with the cluster's previous-query time ≥ 90% of a static Go handler's requests/s",
			fmt.Sprintf("%.0f%% (%.0f vs %.0f req/s)", 100*share, pd.rps, static.rps),
			met(share >= 0.90)},
		{"GET / in the first period after start ≥ 50% of steady state",
			fmt.Sprintf("%.0f%% (%.0f vs %.0f req/s; p99 %s vs %s)", 100*first, fresh.rps, pd.rps, ms(fresh.p99), ms(pd.p99)),
			met(first >= 0.5)},
		{"query-time exchange ≤ 10 writes/s per replica while queried (one per 100 ms at most)",
			fmt.Sprintf("%.1f writes/s", pd.publishes), met(pd.publishes <= 10.5)},
		{"peak RSS during the throughput run < 64 MB", mb(r.peakRSS), met(r.peakRSS < 64<<20)},
	}

	for _, u := range r.updates {
		page.Updates = append(page.Updates, []string{u.name, u.took[0].Round(time.Millisecond).String(),
			steady(u).Round(time.Millisecond).String(), mb(u.bytes[0]), mb(u.bytes[len(u.bytes)-1])})
	}
	for _, s := range r.spread {
		var errs int
		p50s := make([]time.Duration, len(s.seconds))
		for i, x := range s.seconds {
			errs += x.Errors
			p50s[i] = x.P50
		}
		page.Spread = append(page.Spread, []string{s.mode, ms(median(p50s)), ms(medianP99(s.seconds)), ms(worstP99(s.seconds)),
			fmt.Sprintf("%.2f×", worstP99(s.seconds).Seconds()/medianP99(s.seconds).Seconds()), mb(int64(maxF(s.walBytes))), fmt.Sprint(errs)})
		page.Modes = append(page.Modes, s.mode)
	}
	for i := range r.spread[0].seconds {
		row := []string{fmt.Sprint(i)}
		for _, s := range r.spread {
			var wal float64
			if i < len(s.walBytes) {
				wal = s.walBytes[i]
			}
			row = append(row, ms(s.seconds[i].P50), ms(s.seconds[i].P99), mb(int64(wal)))
		}
		page.PerSecond = append(page.PerSecond, row)
	}
	for _, t := range r.throughput {
		page.Throughput = append(page.Throughput, []string{t.name, fmt.Sprintf("%.0f", t.rps), ms(t.p99), fmt.Sprintf("%.0f%%", 100*t.rps/static.rps)})
	}
	page.Publishes, page.PublishesMetric = fmt.Sprintf("%.1f", pd.publishes), publishesMetric
	if len(r.throughput) >= 6 {
		cl, rep := r.throughput[4], r.throughput[5]
		page.ClusterCost = fmt.Sprintf("%.0f%% (%.0f vs %.0f req/s, p99 %s vs %s; %.1f writes/s)",
			100*cl.rps/rep.rps, cl.rps, rep.rps, ms(cl.p99), ms(rep.p99), cl.publishes)
	}

	var b strings.Builder
	if err := reportTemplate.Execute(&b, page); err != nil {
		return "", fmt.Errorf("render BENCHMARKS.md: %w", err)
	}
	return b.String(), nil
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
