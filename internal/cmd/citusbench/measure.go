package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// result is one setup's figures.
type result struct {
	name                 string
	seed                 time.Duration
	strict, strictWork   []time.Duration
	rolling, rollingWork []time.Duration
	bucketP50, bucketMax []time.Duration
	cachedRPS, dbRPS     float64
	cachedP99, dbP99     time.Duration
	cachedShed, dbShed   float64 // share of answers not 200 (503 overloaded)
	tableMB              float64
	strictPerUserNS      float64
	rollingWorkPerUserNS float64
}

var (
	cycleLine = regexp.MustCompile(`users in \d+ buckets in (\S+?)(?: \(bucket p50 (\S+), max (\S+)\))?\n`)
	workField = regexp.MustCompile(`"work":"([^"]+)"`)
)

// pointsd runs the pointsd binary against url and returns its stdout and
// stderr.
func pointsd(ctx context.Context, c config, url string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, c.pointsd, args...) //nolint:gosec // the pointsd binary under test
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("pointsd %v: %w: %s", args, err, errb.String())
	}
	return out.String(), errb.String(), err
}

// measure migrates and seeds url's database and runs cycles and GET /
// load on it.
func measure(ctx context.Context, c config, name, url string) (result, error) {
	r := result{name: name}
	log.Printf("%s: migrate, seed %d users", name, c.users)
	if _, _, err := pointsd(ctx, c, url, "migrate"); err != nil {
		return r, err
	}
	start := time.Now()
	if _, _, err := pointsd(ctx, c, url, "seed", "-users", strconv.FormatInt(c.users, 10)); err != nil {
		return r, err
	}
	r.seed = time.Since(start)
	cy, err := cyclesOnly(ctx, c, name, url)
	if err != nil {
		return r, err
	}
	seed := r.seed
	r = cy
	r.seed = seed
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return r, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	// citus_total_relation_size counts a distributed table's shards on
	// the workers; on one PostgreSQL, the partitions themselves.
	size := `SELECT sum(pg_total_relation_size(partition)) / 1048576.0 FROM buckets`
	var citus bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')`).Scan(&citus); err != nil {
		return r, err
	}
	if citus {
		size = `SELECT sum(citus_total_relation_size(partition)) / 1048576.0 FROM buckets`
	}
	if err := conn.QueryRow(ctx, size).Scan(&r.tableMB); err != nil {
		return r, err
	}
	for _, cached := range []bool{true, false} {
		rps, p99, shed, err := getLoad(ctx, c, url, cached)
		if err != nil {
			return r, err
		}
		log.Printf("  %s GET / (cache %v): %.0f req/s, p99 %v, %.2f%% not 200", name, cached, rps, p99, 100*shed)
		if cached {
			r.cachedRPS, r.cachedP99, r.cachedShed = rps, p99, shed
		} else {
			r.dbRPS, r.dbP99, r.dbShed = rps, p99, shed
		}
	}
	return r, nil
}

// getLoad serves url's database with pointsd (the leader, running rolling
// cycles of a minute) and puts wrk on GET / for c.load, 64 connections.
// It returns the 200s per second, the p99 and the share of other answers.
func getLoad(ctx context.Context, c config, url string, cached bool) (float64, time.Duration, float64, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	addr := l.Addr().String()
	_ = l.Close() // only held to learn a free port
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(sctx, c.pointsd, "serve", "-addr", addr, "-period", "1m", "-cache="+strconv.FormatBool(cached)) //nolint:gosec // the pointsd binary under test
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for { // poll: readiness is what the server offers to wait on
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close() // only the status matters
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, errors.New("pointsd serve did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := exec.CommandContext(ctx, "wrk", "-t2", "-c64", "-d"+strconv.Itoa(int(c.load.Seconds()))+"s", "--latency", base+"/").Output() //nolint:gosec // a server this benchmark started
	if err != nil {
		return 0, 0, 0, fmt.Errorf("wrk: %w", err)
	}
	rps, p99, total := wrkRPS.FindSubmatch(out), wrkP99.FindSubmatch(out), wrkTotal.FindSubmatch(out)
	if rps == nil || p99 == nil || total == nil {
		return 0, 0, 0, fmt.Errorf("wrk output not understood: %s", out)
	}
	// Requests pointsd sheds (503 overloaded: no database slot within
	// 100 ms) are counted apart, not as throughput.
	var bad float64
	if m := wrkBad.FindSubmatch(out); m != nil {
		bad, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	n, _ := strconv.ParseFloat(string(rps[1]), 64)
	all, _ := strconv.ParseFloat(string(total[1]), 64)
	return n * (all - bad) / all, mustDuration(string(p99[1]) + string(p99[2])), bad / all, nil
}

var (
	wrkRPS   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99   = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
	wrkBad   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkTotal = regexp.MustCompile(`(\d+) requests in`)
)

func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		log.Fatalf("duration %q: %v", s, err)
	}
	return d
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// printTable writes the setups side by side.
func printTable(w io.Writer, rs []result) {
	fmt.Fprint(w, "| |")
	for _, r := range rs {
		fmt.Fprintf(w, " %s |", r.name)
	}
	fmt.Fprint(w, "\n| --- |")
	for range rs {
		fmt.Fprint(w, " --- |")
	}
	fmt.Fprintln(w)
	rows := []struct {
		label string
		cell  func(result) string
	}{
		{"seed", func(r result) string { return r.seed.Round(time.Millisecond).String() }},
		{"strict cycle (each run)", func(r result) string { return durations(r.strict) }},
		{"strict work per user", func(r result) string { return fmt.Sprintf("%.0f ns", r.strictPerUserNS) }},
		{"rolling cycle, unpaced (each run)", func(r result) string { return durations(r.rolling) }},
		{"rolling work: sum of bucket transactions (each run)", func(r result) string { return durations(r.rollingWork) }},
		{"rolling work per user", func(r result) string { return fmt.Sprintf("%.0f ns", r.rollingWorkPerUserNS) }},
		{"bucket p50 / max (each run)", func(r result) string {
			s := ""
			for i := range r.bucketP50 {
				if i > 0 {
					s += ", "
				}
				s += r.bucketP50[i].Round(100*time.Microsecond).String() + " / " + r.bucketMax[i].Round(100*time.Microsecond).String()
			}
			return s
		}},
		{"users table (all nodes)", func(r result) string { return fmt.Sprintf("%.0f MiB", r.tableMB) }},
		{"GET / from the cache: 200s/s, p99, shed (503)", func(r result) string {
			return fmt.Sprintf("%.0f, %v, %.2f%%", r.cachedRPS, r.cachedP99, 100*r.cachedShed)
		}},
		{"GET / from the database (-cache=false): 200s/s, p99, shed (503)", func(r result) string {
			return fmt.Sprintf("%.0f, %v, %.2f%%", r.dbRPS, r.dbP99, 100*r.dbShed)
		}},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |", row.label)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", row.cell(r))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}
