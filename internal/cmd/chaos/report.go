package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// report is the run, written as RELIABILITY.md.
type report struct {
	cfg     config
	env     machine
	started time.Time
	took    time.Duration
	results []*result
	code    string // codeUnderTest's, "" if unknown
}

func (r *report) write(dir string) (string, error) {
	//nolint:gosec // G301: docs/, a folder of the repository
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	md, err := r.markdown()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "RELIABILITY.md")
	return path, os.WriteFile(path, []byte(md), 0o644) //nolint:gosec // G306: a document of the repository, for everyone to read
}

// reportTemplateText is RELIABILITY.md with the run's figures left out.
//
//go:embed report.md.tmpl
var reportTemplateText string

// reportTemplate renders a reportPage.
var reportTemplate = template.Must(template.New("RELIABILITY.md").Funcs(template.FuncMap{
	"cell": cell, "cellList": cellList, "join": strings.Join,
}).Parse(reportTemplateText))

// reportPage is what report.md.tmpl shows: the run's figures, formatted.
type reportPage struct {
	Started, Took, TookMinutes string
	Scenarios, Passed          int
	Failed                     []string // "`name` (fail)"
	Machine                    struct {
		Cores      int
		CPU, Mem   string
		PostgreSQL string
		NoFile     uint64
	}
	Command, Code, Dir               string
	Users                            int64
	Period, ProbeEvery               time.Duration
	WatchEvery, GrayFailover         time.Duration
	ProbesPerSecond                  int
	MaxRSS, MaxMetrics, MaxRSSGrowth string
	Results                          []resultRow
	Logs                             []logRow
}

// resultRow is one scenario's row of the results table.
type resultRow struct {
	Verdict, Name, Title, Clients string
	Did, Recovery, Invariants     []string
	Notes                         []string
}

// logRow is one replica's row of the logs table, in one scenario.
type logRow struct {
	Scenario, Replica, Lines string
	Warn, Errors             int
	During, Top              string
}

// markdown renders the run as RELIABILITY.md.
func (r *report) markdown() (string, error) {
	page := reportPage{
		Started:         r.started.UTC().Format("2006-01-02 15:04 MST"),
		Took:            r.took.Round(time.Second).String(),
		TookMinutes:     r.took.Round(time.Minute).String(),
		Scenarios:       len(r.results),
		Command:         strings.Join(r.cfg.args, " "),
		Code:            r.code,
		Dir:             r.cfg.dir,
		Users:           r.cfg.users,
		Period:          r.cfg.period,
		ProbeEvery:      probeEvery,
		WatchEvery:      watchEvery,
		GrayFailover:    grayFailover,
		ProbesPerSecond: int(2 * time.Second / probeEvery),
		MaxRSS:          mib(maxRSS),
		MaxMetrics:      kib(maxMetricsBytes),
		MaxRSSGrowth:    mib(maxRSSGrowth),
	}
	page.Machine.Cores, page.Machine.CPU, page.Machine.Mem = r.env.cores, r.env.cpu, r.env.mem
	page.Machine.PostgreSQL, page.Machine.NoFile = r.env.pgVersion, r.env.nofile
	for _, res := range r.results {
		if res.pass() {
			page.Passed++
		} else {
			page.Failed = append(page.Failed, fmt.Sprintf("`%s` (%s)", res.name, strings.ToLower(res.verdict())))
		}
		page.Results = append(page.Results, newResultRow(res))
		for _, l := range res.logs {
			page.Logs = append(page.Logs, newLogRow(res.name, l))
		}
	}
	var b strings.Builder
	if err := reportTemplate.Execute(&b, page); err != nil {
		return "", fmt.Errorf("render RELIABILITY.md: %w", err)
	}
	return b.String(), nil
}

// newResultRow formats one scenario's outcome for the results table.
func newResultRow(res *result) resultRow {
	row := resultRow{Verdict: res.verdict(), Name: res.name, Title: res.title, Clients: "–",
		Did: res.did, Recovery: res.recovery, Notes: append([]string{}, res.notes...)}
	for _, c := range res.checks {
		mark := "pass"
		if !c.ok {
			mark = "**FAIL**"
		}
		row.Invariants = append(row.Invariants, fmt.Sprintf("%s %s: %s", mark, c.name, c.detail))
	}
	if res.err != nil {
		row.Invariants = append(row.Invariants, "**ERROR** the scenario could not run to its end: "+res.err.Error())
	}
	if res.clients.total() > 0 {
		row.Clients = fmt.Sprintf("%d / %d / %d", res.clients.ok, res.clients.unavailable, res.clients.other)
	}
	if d := describeDetails(res.clients); d != "" {
		row.Notes = append(row.Notes, "clients' "+d)
	}
	return row
}

// newLogRow formats one replica's log counts for the logs table.
func newLogRow(scenario string, l logCount) logRow {
	row := logRow{Scenario: scenario, Replica: l.replica, Lines: fmt.Sprint(l.lines),
		Warn: l.warn, Errors: l.errors, During: "–", Top: l.top}
	if l.faultSecs > 0 {
		row.During = fmt.Sprintf("%d in %.1f s (%.1f/s)", l.faultWarn+l.faultErrors, l.faultSecs, l.faultLinesRate)
	}
	if l.raw > 0 {
		row.Lines += fmt.Sprintf(" (+%d not JSON)", l.raw)
	}
	return row
}

// codeUnderTest names the build under test, as the binary itself says
// (pointsd version: the version, "-dirty" for uncommitted changes, and the
// commit make build stamped in). The work tree's HEAD is not asked: it may
// have moved on while the matrix ran.
func codeUnderTest(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "version").Output() //nolint:gosec // bin is our own build of pointsd
	if err != nil {
		return ""
	}
	return "`" + strings.TrimSpace(string(out)) + "`"
}

// cell makes s safe inside a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func cellList(ss []string) string {
	if len(ss) == 0 {
		return "–"
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cell(s)
	}
	return strings.Join(out, "<br>")
}
