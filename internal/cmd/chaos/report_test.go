package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden reports under testdata/")

// testReport is a run with every kind of row the report can hold: a pass,
// a failure, an error, logs with and without a fault, text to escape.
func testReport() *report {
	started := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	return &report{
		cfg: config{dir: ".data/chaos", users: 200_000, period: 6 * time.Second,
			args: []string{"bin/chaos", "-pointsd", "bin/pointsd", "-dir", ".data/chaos", "-out", "docs"}},
		env:     machine{cores: 2, cpu: "Test CPU @ 2.0GHz", mem: "7.8 GiB", pgVersion: "PostgreSQL 15.20", nofile: 65536},
		started: started,
		took:    17*time.Minute + 42*time.Second,
		code:    "`pointsd abc1234-dirty (commit abc1234def, go1.26.8)`",
		results: []*result{
			{
				name: "leader-kill", title: "leader SIGKILLed, two replicas",
				did:      []string{"2 replicas; SIGKILL to the leader r1 mid cycle"},
				recovery: []string{"GET / 0.42 s", "new leader 1.9 s"},
				clients:  tally{ok: 300, unavailable: 2, other: 0, details: map[string]int{"503 no leader": 2}},
				checks:   []check{{"failover", true, "r2 leads after 1.9 s"}, {"users", true, "200000, max id 200000"}},
				notes:    []string{"a | pipe\nand a newline"},
				logs: []logCount{
					{replica: "r1", lines: 40, warn: 1, errors: 0, top: "lost the lead"},
					{replica: "r2", lines: 55, warn: 3, errors: 2, raw: 1, faultSecs: 2.5, faultWarn: 2, faultErrors: 1, faultLinesRate: 1.2, top: "database down ×3"},
				},
			},
			{
				name: "overload", title: "512 connections of GET / for 10 s",
				checks: []check{{"load", false, "12 other answers"}},
			},
			{
				name: "pg-down-30s", title: "PostgreSQL down for 30 s",
				err: errors.New("start postgres: timeout"),
			},
		},
	}
}

// TestReportMarkdown renders a fixed run and compares it with the golden
// file: the report's wording changes only on purpose (go test -update).
func TestReportMarkdown(t *testing.T) {
	md, err := testReport().markdown()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "RELIABILITY.md"), md)
}

// golden compares got with the file at path, or rewrites it under -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
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
