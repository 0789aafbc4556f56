package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// throughputRun is one server's requests per second and p99 latency.
type throughputRun struct {
	name string
	rps  float64
	p99  time.Duration
	// publishes is pointsd's writes of its latest query time per second
	// (pointsd_query_time_publishes_total) during the run; 0 for others.
	publishes float64
}

// publishesMetric counts a replica's writes to the query-time exchange.
const publishesMetric = "pointsd_query_time_publishes_total"

// benchThroughput puts wrk (64 connections) on pointsd's GET / and on a
// static Go handler returning the same bytes, alternating, and pgbench on
// the query's SQL: the HTTP ceiling and the database ceiling beside pointsd.
func benchThroughput(ctx context.Context, c config, r *report) error {
	fresh, err := benchFirstPeriod(ctx, c)
	if err != nil {
		return err
	}
	log.Printf("  %s: %.0f req/s, p99 %v", fresh.name, fresh.rps, fresh.p99)
	started := time.Now()
	pd, err := startServer(ctx, c, c.pointsd, []string{"serve", "-period", c.period.String()}, "/readyz")
	if err != nil {
		return err
	}
	defer pd.stop()
	// The steady state, rolling cycles running.
	if err := waitFirstCycle(ctx, pd, started, 2*c.period); err != nil {
		return err
	}
	st, err := staticBeside(ctx, c, pd)
	if err != nil {
		return err
	}
	defer st.stop()
	// The cost of the cluster's previous-query time, side by side: two
	// followers (no cycles of their own), one publishing its query times
	// and one keeping them to itself.
	cluster, err := startServer(ctx, c, c.pointsd, []string{"serve", "-period", c.period.String()}, "/readyz")
	if err != nil {
		return err
	}
	defer cluster.stop()
	replica, err := startServer(ctx, c, c.pointsd, []string{"serve", "-period", c.period.String(), "-query-time", "replica"}, "/readyz")
	if err != nil {
		return err
	}
	defer replica.stop()
	runs, err := inTurns(ctx, []server{
		{"static Go handler (HTTP ceiling)", st, false},
		{"pointsd GET / (the cluster's previous-query time)", pd, true},
		{followerCluster, cluster, true},
		{followerReplica, replica, true},
	})
	if err != nil {
		return err
	}
	if r.peakRSS, err = pd.peakRSS(); err != nil {
		return err
	}
	pg, err := pgbench(ctx, c)
	if err != nil {
		return err
	}
	log.Printf("  %s: %.0f queries/s, p99 %v", pg.name, pg.rps, pg.p99)
	r.throughput = append(r.throughput, runs[1], runs[0], pg, fresh, runs[2], runs[3])
	return nil
}

// The followers' rows: the cost of the cluster's previous-query time.
const (
	followerCluster = "pointsd GET /, a follower (-query-time cluster, the default)"
	followerReplica = "pointsd GET /, a follower (-query-time replica)"
)

// server is one HTTP server wrk measures; pointsd says it counts its
// writes to the query-time exchange.
type server struct {
	name    string
	p       *proc
	pointsd bool
}

// staticBeside starts the static handler returning the bytes pd answers
// GET / with.
func staticBeside(ctx context.Context, c config, pd *proc) (*proc, error) {
	resp, err := httpGet(ctx, pd.url("/"))
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read-only: nothing to lose
	return startServer(ctx, c, c.static, []string{"-body", string(body)}, "/")
}

// inTurns runs wrk on GET / of each server in turns, twice each, and
// returns each one's mean, with pointsd's writes to the query-time
// exchange per second.
func inTurns(ctx context.Context, servers []server) ([]throughputRun, error) {
	runs := make([][]throughputRun, len(servers))
	for range 2 {
		for i, s := range servers {
			var before float64
			var err error
			began := time.Now()
			if s.pointsd {
				if before, err = s.p.counter(ctx, publishesMetric); err != nil {
					return nil, err
				}
			}
			t, err := wrk(ctx, s.name, s.p.url("/"))
			if err != nil {
				return nil, err
			}
			if s.pointsd {
				after, err := s.p.counter(ctx, publishesMetric)
				if err != nil {
					return nil, err
				}
				t.publishes = (after - before) / time.Since(began).Seconds()
			}
			log.Printf("  %s: %.0f req/s, p99 %v, %.1f query-time writes/s", s.name, t.rps, t.p99, t.publishes)
			runs[i] = append(runs[i], t)
		}
	}
	out := make([]throughputRun, len(servers))
	for i := range runs {
		out[i] = mean(runs[i])
	}
	return out, nil
}

// firstPeriodName names the measurement of the first period after start.
const firstPeriodName = "pointsd GET /, first period after start (freshly seeded: nobody qualifies)"

// benchFirstPeriod measures GET / in the first period after serve starts on
// a freshly seeded database: every user at 0 points, so no user qualifies
// and proving it takes a scan of every user; no cycle has run, and no
// schedule was published before this leader's. The period is an hour, so
// that no cycle starts during the measurement (checked after it).
func benchFirstPeriod(ctx context.Context, c config) (throughputRun, error) {
	conn, err := pgx.Connect(ctx, c.dbURL)
	if err != nil {
		return throughputRun{}, err
	}
	defer func() { _ = conn.Close(ctx) }() // the measurement's errors are what matter
	if _, err := conn.Exec(ctx, `
		UPDATE users SET points = 0;
		UPDATE buckets SET cycle = 0, seed = 0;
		UPDATE cycle_state SET cycle = 0, period_ms = NULL, next_start = NULL, finished_at = NULL, started_at = now();`); err != nil {
		return throughputRun{}, fmt.Errorf("reset to a freshly seeded state: %w", err)
	}
	if _, err := conn.Exec(ctx, `VACUUM users`); err != nil {
		return throughputRun{}, err
	}
	p, err := startServer(ctx, c, c.pointsd, []string{"serve", "-period", "1h"}, "/readyz")
	if err != nil {
		return throughputRun{}, err
	}
	defer p.stop()
	t, err := wrk(ctx, firstPeriodName, p.url("/"))
	if err != nil {
		return t, err
	}
	var cycle int64
	if err := conn.QueryRow(ctx, `SELECT cycle FROM cycle_state`).Scan(&cycle); err != nil {
		return t, fmt.Errorf("read the cycle after the first-period measurement: %w", err)
	}
	if cycle != 0 {
		return t, fmt.Errorf("a cycle ran during the first-period measurement (cycle %d): run again", cycle)
	}
	return t, nil
}

func mean(runs []throughputRun) throughputRun {
	out := throughputRun{name: runs[0].name}
	for _, t := range runs {
		out.rps += t.rps / float64(len(runs))
		out.p99 += t.p99 / time.Duration(len(runs))
		out.publishes += t.publishes / float64(len(runs))
	}
	return out
}

var (
	wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99 = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
	wrkBad = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func wrk(ctx context.Context, name, url string) (throughputRun, error) {
	out, err := exec.CommandContext(ctx, "wrk", "-t2", "-c64", "-d10s", "--latency", url).Output() //nolint:gosec // url is a server this benchmark started
	if err != nil {
		return throughputRun{}, fmt.Errorf("wrk: %w", err)
	}
	if m := wrkBad.FindSubmatch(out); m != nil {
		return throughputRun{}, fmt.Errorf("wrk on %s: %s non-200 responses", name, m[1])
	}
	rps, p99 := wrkRPS.FindSubmatch(out), wrkP99.FindSubmatch(out)
	if rps == nil || p99 == nil {
		return throughputRun{}, fmt.Errorf("wrk output not understood: %s", out)
	}
	t := throughputRun{name: name}
	t.rps, _ = strconv.ParseFloat(string(rps[1]), 64)
	d, err := time.ParseDuration(string(p99[1]) + string(p99[2]))
	t.p99 = d
	return t, err
}

// pgbench runs the query's SQL (a random floor each time) with 8 clients on
// both cores, and reads its per-transaction log for the p99.
func pgbench(ctx context.Context, c config) (throughputRun, error) {
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output()
		if err != nil {
			return throughputRun{}, fmt.Errorf("pgbench not found")
		}
		bin = filepath.Join(strings.TrimSpace(string(out)), "pgbench")
	}
	dir, err := os.MkdirTemp("", "pgbench-")
	if err != nil {
		return throughputRun{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }() // a temporary folder: best effort
	script := filepath.Join(dir, "query.sql")
	if err := os.WriteFile(script, []byte("\\set floor random(0, 99)\nSELECT id, points FROM users WHERE points > :floor LIMIT 2;\n"), 0o600); err != nil {
		return throughputRun{}, err
	}
	host, port, user, db := hostPort(c.dbURL)
	cmd := exec.CommandContext(ctx, bin, "-n", "-h", host, "-p", port, "-U", user, "-M", "prepared", //nolint:gosec // bin is pgbench, from PATH or pg_config
		"-c", "8", "-j", "2", "-T", "10", "-f", script, "-l", "--log-prefix", filepath.Join(dir, "log"), db)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return throughputRun{}, fmt.Errorf("pgbench: %w: %s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return throughputRun{}, fmt.Errorf("pgbench output not understood: %s", out)
	}
	t := throughputRun{name: "pgbench, the query's SQL, 8 clients (database ceiling)"}
	t.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	logs, _ := filepath.Glob(filepath.Join(dir, "log*"))
	var lat []time.Duration
	for _, l := range logs {
		f, err := os.Open(l) //nolint:gosec // pgbench's own log, in our temporary folder
		if err != nil {
			return t, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 {
				us, _ := strconv.ParseInt(f[2], 10, 64)
				lat = append(lat, time.Duration(us)*time.Microsecond)
			}
		}
		_ = f.Close() // read-only: nothing to lose
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		t.p99 = lat[len(lat)*99/100]
	}
	return t, nil
}

// waitFirstCycle waits until the server's leader has started a cycle after
// since.
func waitFirstCycle(ctx context.Context, p *proc, since time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := httpGet(ctx, p.url("/status"))
		if err == nil {
			var st struct {
				CycleStartedAt time.Time `json:"cycle_started_at"`
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			_ = resp.Body.Close() // read-only: nothing to lose
			if err == nil && st.CycleStartedAt.After(since) {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no cycle started within %v", timeout)
}
