package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/localpg"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// The scale benchmark (make bench-scale) measures what a cycle costs as the
// number of users grows, on servers of its own: the cost curve, the
// PostgreSQL settings that matter, and a paced run at the largest size.

// profile is a set of server settings the scale benchmark runs under.
type profile struct {
	name, about string
	settings    map[string]string
}

var (
	// tuned is make run's: the settings docs/OPERATIONS.md recommends.
	tuned = profile{"tuned", "make run's: shared_buffers 512MB, max_wal_size 4GB",
		map[string]string{"shared_buffers": "512MB", "max_wal_size": "4GB", "max_connections": "200"}}
	// defaults is a PostgreSQL as installed.
	defaults = profile{"defaults", "PostgreSQL's defaults: shared_buffers 128MB, max_wal_size 1GB",
		map[string]string{"max_connections": "200"}}
	// large holds the whole table in shared buffers.
	large = profile{"large buffers", "shared_buffers 3GB (more than the 10M table), max_wal_size 4GB",
		map[string]string{"shared_buffers": "3GB", "max_wal_size": "4GB", "max_connections": "200"}}
)

// scaleRun is what one number of users cost under one profile.
type scaleRun struct {
	users   int64
	profile string
	// Seeding (tuned only): pointsd seed beside one INSERT … SELECT.
	seed, plainSeed time.Duration
	// The users table (heap, TOAST and primary key) after seeding and after
	// the cycles.
	tableBytes, tableAfter int64
	strict, rolling        cycleCost
}

// cycleCost is one cycle's cost: its span, its update work (the strict
// transaction, or the sum of the rolling buckets'), the slowest and median
// bucket, the CPU all PostgreSQL processes used, the WAL it wrote and the
// checkpoints it caused.
type cycleCost struct {
	span, work, bucketP50, bucketMax, cpu time.Duration
	wal, checkpoints                      int64
}

// pacedRun is serve -period at the largest size, under load.
type pacedRun struct {
	users                            int64
	period                           time.Duration
	cycles, overruns, late, skipped  int
	spanMax, endMargin, spread, work time.Duration
	static, pointsd                  throughputRun
}

type scaleReport struct {
	cfg     config
	started time.Time
	took    time.Duration
	runs    []scaleRun
	paced   *pacedRun
}

// scaleServer runs the benchmark's PostgreSQL, restarted to change profile.
type scaleServer struct {
	dir string
	srv *localpg.Server
	url string // the benchmark's database
	on  profile
}

func (s *scaleServer) use(ctx context.Context, p profile) error {
	if s.srv != nil && s.on.name == p.name {
		return nil
	}
	if s.srv != nil {
		if err := s.srv.Stop(ctx); err != nil {
			return err
		}
	}
	srv, err := localpg.Start(ctx, localpg.Config{Dir: s.dir, Settings: p.settings})
	if err != nil {
		return err
	}
	if !srv.Started {
		return fmt.Errorf("a server already runs in %s: stop it first (its settings would stand)", s.dir)
	}
	s.srv, s.on = srv, p
	s.url = strings.Replace(srv.URL, "/postgres?", "/pointsd_scale?", 1)
	return nil
}

func (s *scaleServer) stop(ctx context.Context) {
	if s.srv != nil {
		if err := s.srv.Stop(ctx); err != nil {
			log.Printf("stop postgres: %v", err)
		}
	}
}

// benchScale measures every size in c.scale and writes BENCHMARKS-SCALE.md.
func benchScale(ctx context.Context, c config, dir string) error {
	r := &scaleReport{cfg: c, started: time.Now()}
	s := &scaleServer{dir: dir}
	defer s.stop(context.Background())
	for i, n := range c.scale {
		if err := s.use(ctx, tuned); err != nil {
			return err
		}
		if !strings.Contains(s.url, "/pointsd_scale?") {
			return fmt.Errorf("unexpected server URL %s", s.url)
		}
		log.Printf("%d users: seed…", n)
		run, err := seedScale(ctx, s.url, n)
		if err != nil {
			return err
		}
		if err := cycles(ctx, s, &run); err != nil {
			return err
		}
		r.runs = append(r.runs, run)
		log.Printf("  seed %v (plain %v), strict %v, rolling work %v, table %s", run.seed.Round(time.Millisecond),
			run.plainSeed.Round(time.Millisecond), run.strict.span.Round(time.Millisecond),
			run.rolling.work.Round(time.Millisecond), mb(run.tableBytes))
		// The settings, at the smallest and the largest size.
		if i == 0 || i == len(c.scale)-1 {
			others := []profile{defaults}
			if i == len(c.scale)-1 {
				others = append(others, large)
			}
			for _, p := range others {
				if err := s.use(ctx, p); err != nil {
					return err
				}
				other := scaleRun{users: n, profile: p.name, tableBytes: run.tableBytes}
				if err := cycles(ctx, s, &other); err != nil {
					return err
				}
				r.runs = append(r.runs, other)
				log.Printf("  %s: strict %v, rolling work %v", p.name, other.strict.span.Round(time.Millisecond),
					other.rolling.work.Round(time.Millisecond))
			}
		}
		if i == len(c.scale)-1 {
			if err := s.use(ctx, tuned); err != nil {
				return err
			}
			c.dbURL = s.url
			if r.paced, err = pacedScale(ctx, c, n); err != nil {
				return err
			}
		}
	}
	r.took = time.Since(r.started)
	if err := r.write(c.out); err != nil {
		return err
	}
	log.Printf("wrote %s/BENCHMARKS-SCALE.md in %s", c.out, r.took.Round(time.Second))
	return nil
}

// seedScale recreates the database with n users, timing pointsd's seed
// beside one plain INSERT … SELECT of as many rows into the same table.
func seedScale(ctx context.Context, url string, n int64) (scaleRun, error) {
	run := scaleRun{users: n, profile: tuned.name}
	for _, plain := range []bool{true, false} {
		if err := resetDB(ctx, url); err != nil {
			return run, err
		}
		pool, err := openPool(ctx, url, 4)
		if err != nil {
			return run, err
		}
		if err := pgsql.Migrate(ctx, pool, pgsql.DefaultPartitions, nil); err != nil {
			pool.Close()
			return run, err
		}
		start := time.Now()
		if plain {
			_, err = pool.Exec(ctx, `INSERT INTO users (id) SELECT g FROM generate_series(1, $1::bigint) g`, n)
			run.plainSeed = time.Since(start)
		} else {
			_, err = pgsql.Seed(ctx, pool, n, 2, nil)
			run.seed = time.Since(start)
		}
		if err == nil {
			// As a server would have it before its first cycle: analyzed
			// and checkpointed, so that the cycles do not pay for the seed.
			_, err = pool.Exec(ctx, `VACUUM ANALYZE users`)
		}
		if err == nil {
			_, err = pool.Exec(ctx, `CHECKPOINT`)
		}
		if err == nil {
			run.tableBytes, err = tableBytes(ctx, pool)
		}
		pool.Close()
		if err != nil {
			return run, err
		}
	}
	return run, nil
}

// cycles runs a strict cycle then a rolling one (unpaced, two workers),
// each twice, keeping the second: the first after a restart reads the
// table into memory.
func cycles(ctx context.Context, s *scaleServer, run *scaleRun) error {
	pool, err := openPool(ctx, s.url, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, mode := range []pointsd.Mode{pointsd.Strict, pointsd.Rolling} {
		for range 2 {
			cost, err := cycleOnce(ctx, pool, s.dir, mode)
			if err != nil {
				return err
			}
			if mode == pointsd.Strict {
				run.strict = cost
			} else {
				run.rolling = cost
			}
		}
	}
	run.tableAfter, err = tableBytes(ctx, pool)
	return err
}

func cycleOnce(ctx context.Context, pool *pgxpool.Pool, dir string, mode pointsd.Mode) (cycleCost, error) {
	u, err := updater.New(updater.Config{Pool: pool, Metrics: metrics.New(), Mode: mode, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return cycleCost{}, err
	}
	var walBefore string
	var ckptBefore int64
	if err := pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, checkpoints_req + checkpoints_timed FROM pg_stat_bgwriter`).
		Scan(&walBefore, &ckptBefore); err != nil {
		return cycleCost{}, err
	}
	cpuBefore, err := postgresCPU(dir)
	if err != nil {
		return cycleCost{}, err
	}
	res, err := u.RunCycle(ctx)
	if err != nil {
		return cycleCost{}, err
	}
	cpuAfter, err := postgresCPU(dir)
	if err != nil {
		return cycleCost{}, err
	}
	c := cycleCost{span: res.Took, work: res.Work, bucketP50: res.BucketP50, bucketMax: res.BucketMax, cpu: cpuAfter - cpuBefore}
	err = pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint,
		checkpoints_req + checkpoints_timed - $2 FROM pg_stat_bgwriter`, walBefore, ckptBefore).Scan(&c.wal, &c.checkpoints)
	return c, err
}

// tableBytes is the users table's size: every partition's heap, TOAST and
// primary key.
func tableBytes(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT sum(pg_total_relation_size(partition))::bigint FROM buckets`).Scan(&n)
	return n, err
}

// postgresCPU is the CPU time (user and system) the server running in dir
// has used so far, from /proc: its postmaster's children, the backends, and
// the WAL writer, checkpointer and autovacuum the cycle makes work.
func postgresCPU(dir string) (time.Duration, error) {
	pidFile, err := os.ReadFile(filepath.Join(dir, "postmaster.pid")) //nolint:gosec // the benchmark's own cluster
	if err != nil {
		return 0, err
	}
	postmaster := strings.SplitN(string(pidFile), "\n", 2)[0]
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, path := range stats {
		b, err := os.ReadFile(path) //nolint:gosec // /proc/N/stat
		if err != nil {
			continue // the process ended
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open || s[open+1:closing] != "postgres" {
			continue
		}
		f := strings.Fields(s[closing+1:]) // f[0] is field 3, the state; f[1] the parent
		if len(f) < 13 || f[1] != postmaster {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
		stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
		ticks += utime + stime
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// pacedScale runs serve -period c.scalePeriod over n users (already seeded
// at c.dbURL) for at least four cycles, with wrk on GET / and on a static
// handler in turns during them, and reports how the cycles kept to their
// period and what GET / kept of the static handler's rate.
func pacedScale(ctx context.Context, c config, n int64) (*pacedRun, error) {
	period := c.scalePeriod
	log.Printf("%d users: serve -period %v under load…", n, period)
	pool, err := openPool(ctx, c.dbURL, 2)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	// Every change of the cycle state, when it was made.
	if _, err := pool.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS bench_history (cycle bigint, started_at timestamptz, finished_at timestamptz,
			last_duration double precision, spread_ms bigint, at timestamptz);
		TRUNCATE bench_history;
		CREATE OR REPLACE FUNCTION bench_record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO bench_history VALUES (NEW.cycle, NEW.started_at, NEW.finished_at, NEW.last_duration,
			NEW.spread_ms, clock_timestamp()); RETURN NULL; END $$;
		CREATE OR REPLACE TRIGGER bench_record AFTER UPDATE ON cycle_state FOR EACH ROW EXECUTE FUNCTION bench_record();
		UPDATE cycle_state SET cluster_mode = 'rolling'`); err != nil {
		return nil, err
	}
	started := time.Now()
	pd, err := startServer(ctx, c, c.pointsd, []string{"serve", "-period", period.String()}, "/readyz")
	if err != nil {
		return nil, err
	}
	defer pd.stop()
	if err := waitFirstCycle(ctx, pd, started, 2*period+10*time.Second); err != nil {
		return nil, err
	}
	first := time.Now()
	st, err := staticBeside(ctx, c, pd)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	// GET / during rolling cycles, beside the static handler, in turns.
	runs, err := inTurns(ctx, []server{{"static", st, false}, {"pointsd", pd, true}})
	if err != nil {
		return nil, err
	}
	static, pointsd := runs[0], runs[1]
	// Four whole cycles after the first started.
	const want = 4
	deadline := first.Add((want+2)*period + 30*time.Second)
	var finished int
	for {
		if err := pool.QueryRow(ctx, `SELECT count(DISTINCT cycle) FROM bench_history WHERE finished_at IS NOT NULL AND at > $1`,
			first).Scan(&finished); err != nil {
			return nil, err
		}
		if finished >= want {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d cycles finished in %v", finished, time.Since(first).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	m, err := scrape(ctx, pd.url("/metrics"))
	if err != nil {
		return nil, err
	}
	p := &pacedRun{users: n, period: period, static: static, pointsd: pointsd,
		overruns: int(value(m, "pointsd_cycle_overruns_total")), late: int(value(m, "pointsd_cycle_late_starts_total")),
		skipped: int(value(m, "pointsd_cycle_boundaries_skipped_total")),
		spread:  time.Duration(value(m, "pointsd_cycle_spread_seconds") * float64(time.Second))}
	if h := series(m, "pointsd_cycle_work_seconds", "mode", "rolling").GetHistogram(); h.GetSampleCount() > 0 {
		p.work = time.Duration(h.GetSampleSum() / float64(h.GetSampleCount()) * float64(time.Second))
	}
	// Each finished cycle's span, and how long before its next boundary it
	// ended (negative: past it).
	var spanMax, margin float64
	err = pool.QueryRow(ctx, `
		SELECT count(*), max(last_duration), min(extract(epoch FROM started_at + $1 * interval '1 second' - finished_at))
		FROM (SELECT DISTINCT ON (cycle) cycle, started_at, finished_at, last_duration FROM bench_history
		      WHERE finished_at IS NOT NULL ORDER BY cycle, at) f`, period.Seconds()).Scan(&p.cycles, &spanMax, &margin)
	p.spanMax = time.Duration(spanMax * float64(time.Second))
	p.endMargin = time.Duration(margin * float64(time.Second))
	log.Printf("  %d cycles: %d overruns, %d late starts, %d boundaries skipped; span max %v, ended at least %v before the boundary; GET / %.0f req/s against %.0f static (%.0f%%)",
		p.cycles, p.overruns, p.late, p.skipped, p.spanMax.Round(time.Millisecond), p.endMargin.Round(time.Millisecond),
		p.pointsd.rps, p.static.rps, 100*p.pointsd.rps/p.static.rps)
	return p, err
}

// scrape reads a /metrics page into its metric families, by name.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	resp, err := httpGet(ctx, url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read-only
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// series is the first series of the family name whose labels hold every
// pair in labels (name, value, name, value…), or nil.
func series(families map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
next:
	for _, m := range families[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !hasLabel(m, labels[i], labels[i+1]) {
				continue next
			}
		}
		return m
	}
	return nil
}

// hasLabel says whether the series m has the label name=value.
func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// value is the counter's, gauge's or untyped value of the first series of
// the family name, or 0 when there is none.
func value(families map[string]*dto.MetricFamily, name string) float64 {
	m := series(families, name)
	return m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
}
