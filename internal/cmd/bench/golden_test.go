package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/load"
)

var update = flag.Bool("update", false, "rewrite the golden reports under testdata/")

// testMachine is a machine with fixed figures, for the golden reports.
var testMachine = benchMachine{cores: 2, cpu: "Test CPU @ 2.0GHz", mem: "7.8 GiB", goVersion: "go1.26.8", postgres: "PostgreSQL 15.20"}

// testReport is a make bench run with fixed figures.
func testReport() (*report, config) {
	c := config{users: 1_000_000, cycles: 4, period: 10 * time.Second, rate: 200}
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	seconds := func(p99 ...int) []load.Second {
		out := make([]load.Second, len(p99))
		for i, x := range p99 {
			out[i] = load.Second{Requests: 200, Errors: i % 2, P50: time.Duration(x) * time.Millisecond / 4, P99: time.Duration(x) * time.Millisecond}
		}
		return out
	}
	r := &report{
		cfg:       c,
		started:   time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC),
		took:      14*time.Minute + 3*time.Second,
		seedPlain: 2600 * time.Millisecond, seedPointsd: 2100 * time.Millisecond,
		updates: []*updateRun{
			{name: "pointsd strict", took: ms(1500, 1300, 1250, 1210), bytes: []int64{130 << 20, 131 << 20, 131 << 20, 132 << 20}},
			{name: "classic UPDATE", took: ms(4800, 5200, 5600, 6100), bytes: []int64{115 << 20, 230 << 20, 345 << 20, 460 << 20}},
			{name: "classic, ranges", took: ms(3000, 3100, 3300, 3400), bytes: []int64{115 << 20, 200 << 20, 290 << 20, 380 << 20}},
		},
		spread: []*spreadRun{
			{mode: "strict", seconds: seconds(5, 6, 40, 7), walBytes: []float64{1 << 20, 2 << 20, 90 << 20, 1 << 20}},
			{mode: "rolling", seconds: seconds(5, 6, 7, 6), walBytes: []float64{10 << 20, 11 << 20, 12 << 20}},
			{mode: "static", seconds: seconds(2, 3, 2, 2)},
		},
		throughput: []throughputRun{
			{name: "pointsd GET /", rps: 18500, p99: 9 * time.Millisecond, publishes: 9.8},
			{name: "static Go handler", rps: 20000, p99: 8 * time.Millisecond},
			{name: "pgbench, the query's SQL", rps: 17000, p99: 2 * time.Millisecond},
			{name: "pointsd GET /, first period", rps: 9000, p99: 30 * time.Millisecond},
			{name: "pointsd GET /, a follower (-query-time cluster, the default)", rps: 19000, p99: 9 * time.Millisecond, publishes: 9.9},
			{name: "pointsd GET /, a follower (-query-time replica)", rps: 19400, p99: 9 * time.Millisecond},
		},
		peakRSS: 48 << 20,
	}
	return r, c
}

// testScaleReport is a make bench-scale run with fixed figures.
func testScaleReport() *scaleReport {
	cost := func(span, work int) cycleCost {
		return cycleCost{span: time.Duration(span) * time.Millisecond, work: time.Duration(work) * time.Millisecond,
			bucketP50: 20 * time.Millisecond, bucketMax: 90 * time.Millisecond, cpu: time.Duration(span) * time.Millisecond * 3 / 2,
			wal: int64(span) << 17, checkpoints: int64(span / 3000)}
	}
	return &scaleReport{
		started: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		took:    7*time.Minute + 12*time.Second,
		runs: []scaleRun{
			{users: 1_000_000, profile: tuned.name, seed: 2 * time.Second, plainSeed: 2600 * time.Millisecond,
				tableBytes: 128 << 20, tableAfter: 130 << 20, strict: cost(1200, 1200), rolling: cost(1500, 2400)},
			{users: 1_000_000, profile: defaults.name, strict: cost(3500, 3500), rolling: cost(2000, 3100)},
			{users: 2_500_000, profile: tuned.name, seed: 6 * time.Second, plainSeed: 7 * time.Second,
				tableBytes: 320 << 20, tableAfter: 330 << 20, strict: cost(3100, 3100), rolling: cost(3900, 6000)},
		},
		paced: &pacedRun{users: 2_500_000, period: 30 * time.Second, cycles: 4, overruns: 0, late: 1, skipped: 0,
			spanMax: 25 * time.Second, endMargin: 4 * time.Second, spread: 24 * time.Second, work: 6 * time.Second,
			static: throughputRun{rps: 20000, p99: 8 * time.Millisecond}, pointsd: throughputRun{rps: 13000, p99: 15 * time.Millisecond}},
	}
}

// The reports' wording changes only on purpose: each is rendered from
// fixed figures and compared with its golden file (go test -update).
func TestReportsMarkdown(t *testing.T) {
	r, c := testReport()
	paced := "### 10M users, `serve -period 1m0s`, under load\n\nfigures\n"
	citus := "### One PostgreSQL beside Citus, 1M users\n\ncitus figures"
	golden(t, "BENCHMARKS.md", must(t)(r.markdown(c, testMachine, paced, citus)))
	golden(t, "BENCHMARKS-alone.md", must(t)(r.markdown(c, testMachine, "", "")))
	s := testScaleReport()
	golden(t, "BENCHMARKS-SCALE.md", must(t)(s.markdown(testMachine)))
	s.runs, s.paced = s.runs[:1], nil
	golden(t, "BENCHMARKS-SCALE-one.md", must(t)(s.markdown(testMachine)))
}

// must fails the test on a rendering error, else passes the text on.
func must(t *testing.T) func(string, error) string {
	return func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path) //nolint:gosec // a file of the test's own
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the report differs from %s (go test -update rewrites it):\n%s", path, got)
	}
}
