package main

import (
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
	md, err := r.markdown(m)
	if err != nil {
		return err
	}
	//nolint:gosec // G306: a document of the repository, readable by all
	return os.WriteFile(filepath.Join(dir, "BENCHMARKS-SCALE.md"), []byte(md), 0o644)
}

// scaleTemplateText is BENCHMARKS-SCALE.md with the run's figures left out.
//
//go:embed scalereport.md.tmpl
var scaleTemplateText string

// scaleTemplate renders a scalePage.
var scaleTemplate = template.Must(template.New("BENCHMARKS-SCALE.md").
	Funcs(template.FuncMap{"join": strings.Join}).Parse(scaleTemplateText))

// scalePage is what scalereport.md.tmpl shows, formatted. A table's rows
// are its cells, in the order of the template's header.
type scalePage struct {
	Started, Took, Machine   string
	Tuned, Defaults, Large   string // the profiles' settings
	Curve, PerUser, Settings [][]string
	Growth                   *scaleGrowth // nil below two sizes
	Paced                    *pacedPage   // nil without a paced run
}

// scaleGrowth compares the smallest and the largest size, and says how
// many users this machine fits in a period.
type scaleGrowth struct {
	From, To, Factor, Work, Strict, WAL string
	Span, SpanPerUser, FitShare         string
	FitMinute, FitHalfMinute            string
}

// pacedPage is the paced run's section.
type pacedPage struct {
	Users, Cycles          string
	Period                 time.Duration
	Row                    []string
	Pointsd, Static, Ratio string
	NoOverrun, Share       string
}

// markdown renders BENCHMARKS-SCALE.md from the run and the machine.
func (r *scaleReport) markdown(m benchMachine) (string, error) {
	page := scalePage{
		Started: r.started.UTC().Format("2006-01-02 15:04 MST"), Took: r.took.Round(time.Second).String(),
		Machine: fmt.Sprintf("%d cores (%s), %s of memory, %s", m.cores, m.cpu, m.mem, m.goVersion),
		Tuned:   tuned.about, Defaults: defaults.about, Large: large.about,
	}
	var base []scaleRun
	for _, x := range r.runs {
		if x.profile != tuned.name {
			continue
		}
		base = append(base, x)
		page.Curve = append(page.Curve, []string{millions(x.users), secs(x.seed), secs(x.plainSeed),
			mb(x.tableBytes) + " → " + mb(x.tableAfter), secs(x.strict.span), secs(x.rolling.work), secs(x.rolling.span),
			ms(x.rolling.bucketP50) + " / " + ms(x.rolling.bucketMax), secs(x.strict.cpu) + " / " + secs(x.rolling.cpu),
			mb(x.strict.wal) + " / " + mb(x.rolling.wal), fmt.Sprintf("%d / %d", x.strict.checkpoints, x.rolling.checkpoints)})
		page.PerUser = append(page.PerUser, []string{millions(x.users),
			fmt.Sprintf("%.2f µs", perUser(x.strict.span, x.users)), fmt.Sprintf("%.2f µs", perUser(x.rolling.work, x.users)),
			fmt.Sprintf("%.2f µs", perUser(x.rolling.cpu, x.users)), fmt.Sprintf("%.0f B", float64(x.rolling.wal)/float64(x.users))})
	}
	if len(base) >= 2 {
		lo, hi := base[0], base[len(base)-1]
		// The limit: the unpaced rolling span is what the cycle needs of
		// the period with two workers.
		spanPerUser := hi.rolling.span.Seconds() / float64(hi.users)
		page.Growth = &scaleGrowth{
			From: millions(lo.users), To: millions(hi.users),
			Factor: fmt.Sprintf("%.0f×", float64(hi.users)/float64(lo.users)),
			Work:   fmt.Sprintf("%.2f×", perUser(hi.rolling.work, hi.users)/perUser(lo.rolling.work, lo.users)),
			Strict: fmt.Sprintf("%.2f×", perUser(hi.strict.span, hi.users)/perUser(lo.strict.span, lo.users)),
			WAL:    fmt.Sprintf("%.2f×", (float64(hi.rolling.wal)/float64(hi.users))/(float64(lo.rolling.wal)/float64(lo.users))),
			Span:   secs(hi.rolling.span), SpanPerUser: fmt.Sprintf("%.2f µs", spanPerUser*1e6),
			FitShare:      fmt.Sprintf("%.0f%%", fitShare*100),
			FitMinute:     millions(int64(fitShare * 60 / spanPerUser)),
			FitHalfMinute: millions(int64(fitShare * 30 / spanPerUser)),
		}
	}
	for _, x := range r.runs {
		if x.profile == tuned.name && !r.comparedAt(x.users) {
			continue
		}
		page.Settings = append(page.Settings, []string{millions(x.users), x.profile, secs(x.strict.span), secs(x.rolling.work),
			secs(x.rolling.span), mb(x.strict.wal), fmt.Sprintf("%d / %d", x.strict.checkpoints, x.rolling.checkpoints)})
	}
	if x := r.paced; x != nil {
		ratio := x.pointsd.rps / x.static.rps
		page.Paced = &pacedPage{
			Users: millions(x.users), Period: x.period, Cycles: fmt.Sprint(x.cycles),
			Row: []string{fmt.Sprint(x.cycles), fmt.Sprint(x.overruns), fmt.Sprint(x.late), fmt.Sprint(x.skipped),
				secs(x.spanMax), secs(x.endMargin), secs(x.spread), secs(x.work)},
			Pointsd:   fmt.Sprintf("%.0f req/s, p99 %s", x.pointsd.rps, ms(x.pointsd.p99)),
			Static:    fmt.Sprintf("%.0f req/s, p99 %s", x.static.rps, ms(x.static.p99)),
			Ratio:     fmt.Sprintf("%.0f%%", 100*ratio),
			NoOverrun: met(x.overruns == 0 && x.skipped == 0), Share: met(ratio >= 0.6),
		}
	}
	var b strings.Builder
	if err := scaleTemplate.Execute(&b, page); err != nil {
		return "", fmt.Errorf("render BENCHMARKS-SCALE.md: %w", err)
	}
	return b.String(), nil
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
