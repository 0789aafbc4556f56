package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/internal/localcitus"
)

// A Citus worker cut off between a bucket's PREPARE and its COMMIT
// PREPARED, without a reset: the scenario runs on a Citus cluster of its
// own (a coordinator and two workers, internal/localcitus, with the
// settings docs/CITUS.md recommends), which stands in for the run's
// server while it lasts; the invariants are the same, read through the
// coordinator.

// citusTCPUserTimeout is the coordinator's tcp_user_timeout towards its
// workers (localcitus.Settings): how long its commit may wait on a worker
// gone silent.
const citusTCPUserTimeout = 10 * time.Second

// citusBlackhole2PC starts the Citus cluster and two replicas on its
// coordinator, then drops every packet to and from worker 2 (iptables on
// loopback) from the moment a bucket's COMMIT PREPARED is on its way to
// it, for grayHold, then heals.
func citusBlackhole2PC(ctx context.Context, x *sc) error {
	if err := localcitus.Installed(ctx); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("not root: iptables drops the worker's packets")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("iptables is not installed (make chaos installs it)")
	}
	base := filepath.Join(x.e.cfg.dir, "citus")
	if err := os.MkdirAll(base, 0o755); err != nil { //nolint:gosec // the servers run as the postgres user, who must enter it
		return err
	}
	cl, err := localcitus.Start(ctx, base, 2, map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
	if err != nil {
		return err
	}
	defer func() { _ = cl.Stop(context.Background()) }() // its data is thrown away with it
	coord, err := citusDB(ctx, x.e, cl)
	if err != nil {
		return err
	}
	defer coord.db.Close()
	// The coordinator stands in for the run's server, until the end.
	single := x.e.pg
	x.e.pg = coord
	defer func() { x.e.pg = single }()
	x.watcher.stop()
	x.watcher = startWatcher(ctx, coord.db)

	if err := x.start(ctx, "rolling", 2); err != nil {
		return err
	}
	if err := x.waitCycles(ctx, 1); err != nil {
		return err
	}
	worker := cl.Workers[1]
	addr := "127.0.0.1:" + strconv.Itoa(worker.Port)
	cut := &dropRules{port: worker.Port}
	defer func() { _ = cut.heal() }() // whatever happens; healed already, it deletes nothing
	if err := cut.armOn(ctx, "COMMIT PREPARED"); err != nil {
		return err
	}
	if err := cut.waitTripped(ctx, 3*x.period); err != nil {
		return err
	}
	x.faultBegins(ctx)
	if err := cut.dropAll(ctx); err != nil {
		return err
	}
	x.res.didf("Citus: a coordinator and 2 workers, %d users; 2 replicas, rolling; worker 2 (%s) cut off (iptables DROP on loopback, no reset) "+
		"from the moment a bucket's COMMIT PREPARED was on its way to it, for %s; then healed", cmp.Or(x.users, x.e.cfg.users), addr, grayHold)

	x.readyzNames(ctx, "citus worker "+addr+" is unreachable")
	longest := x.watchCommits(ctx, x.res.faultStart.Add(grayHold))
	x.res.add(check{"commit freed", longest <= citusTCPUserTimeout+5*time.Second,
		fmt.Sprintf("the longest pointsd COMMIT on the coordinator while worker 2 was cut off: %.1f s (bound: its tcp_user_timeout %s + 5 s)",
			longest.Seconds(), citusTCPUserTimeout)})
	if err := cut.heal(); err != nil {
		return err
	}
	x.faultEnds()
	x.noPreparedLeft(ctx, 30*time.Second)
	// Buckets wait on what the cut-off commit holds: the leader cuts the
	// cycle short (logged), and the next one rewrites them.
	x.conclude(ctx, concludeOpts{cutShort: true})
	if due, skipped, err := x.skippedBoundaries(ctx, x.res.faultStart, x.res.faultEnd); err == nil {
		x.res.notef("%d of %d boundaries while worker 2 was cut off passed without a cycle: every bucket has shards on it", skipped, due)
	}
	return nil
}

// citusDB creates the harness's database on every node of cl, registers
// the workers, and has pointsd migrate (distribute) and seed it: a
// cluster value whose url and db are the coordinator's.
func citusDB(ctx context.Context, e *env, cl *localcitus.Cluster) (*cluster, error) {
	_ = cl.DropDB(ctx, dbName) // a fresh cluster has none; one a killed run left might
	url, err := cl.CreateDB(ctx, dbName, len(cl.Workers))
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: cl.Coordinator.Dir, port: cl.Coordinator.Port, log: e.pgLog,
		adminURL: cl.Coordinator.URL, url: url}
	if err := c.prepareDB(ctx, e.cfg.pointsd, e.cfg.users); err != nil {
		if c.db != nil {
			c.db.Close()
		}
		return nil, err
	}
	return c, nil
}

// dropRules are the iptables rules that cut a loopback port off: first one
// that drops the packet carrying a pattern (and its retransmissions), then
// ones that drop every packet to and from the port.
type dropRules struct {
	port  int
	rules [][]string // inserted, in order
}

func (d *dropRules) insert(ctx context.Context, rule []string) error {
	if err := sh(ctx, append([]string{"iptables", "-I"}, rule...)...); err != nil {
		return err
	}
	d.rules = append(d.rules, rule)
	return nil
}

// armOn drops, from now on, every packet to the port that carries pattern.
func (d *dropRules) armOn(ctx context.Context, pattern string) error {
	return d.insert(ctx, []string{"OUTPUT", "-o", "lo", "-p", "tcp", "--dport", strconv.Itoa(d.port),
		"-m", "string", "--string", pattern, "--algo", "bm", "-j", "DROP"})
}

// waitTripped waits until the armed rule dropped a packet, at most within.
func (d *dropRules) waitTripped(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		out, err := exec.CommandContext(ctx, "iptables", "-L", "OUTPUT", "-n", "-v", "-x").Output() //nolint:gosec // fixed arguments
		if err != nil {
			return fmt.Errorf("iptables -L: %w", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if strings.Contains(line, "STRING match") && strings.Contains(line, "dpt:"+strconv.Itoa(d.port)) && len(f) > 0 && f[0] != "0" {
				return nil
			}
		}
		if !sleepCtx(ctx, 2*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("no packet to port %d carried the pattern within %s", d.port, within)
}

// dropAll drops every packet to and from the port.
func (d *dropRules) dropAll(ctx context.Context) error {
	p := strconv.Itoa(d.port)
	for _, dir := range []string{"--dport", "--sport"} {
		if err := d.insert(ctx, []string{"OUTPUT", "-o", "lo", "-p", "tcp", dir, p, "-j", "DROP"}); err != nil {
			return err
		}
	}
	return nil
}

// heal deletes every rule inserted, last first.
func (d *dropRules) heal() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for i := len(d.rules) - 1; i >= 0; i-- {
		errs = append(errs, sh(ctx, append([]string{"iptables", "-D"}, d.rules[i]...)...))
	}
	d.rules = nil
	return errors.Join(errs...)
}

// readyzNames checks that every replica's /readyz turns 503 naming what
// (a substring of a problem) within 10 s of the fault's start.
func (x *sc) readyzNames(ctx context.Context, what string) {
	for _, r := range x.replicas {
		deadline := x.res.faultStart.Add(10 * time.Second)
		var last string
		named := false
		for !named && time.Now().Before(deadline) {
			code, body, err := r.get(ctx, "/readyz")
			var rd struct{ Problems []string }
			switch {
			case err != nil:
				last = err.Error()
			case json.Unmarshal(body, &rd) != nil:
				last = fmt.Sprintf("%d %s", code, strings.TrimSpace(string(body)))
			default:
				last = fmt.Sprintf("%d %q", code, rd.Problems)
				for _, p := range rd.Problems {
					named = named || (code == http.StatusServiceUnavailable && strings.Contains(p, what))
				}
			}
			if !named && !sleepCtx(ctx, 200*time.Millisecond) {
				return
			}
		}
		took := time.Since(x.res.faultStart)
		detail := fmt.Sprintf("%s /readyz 503 naming %q %.1f s into the fault (bound: 10 s)", r.name, what, took.Seconds())
		if !named {
			detail = fmt.Sprintf("%s /readyz did not name %q within 10 s; last: %s", r.name, what, last)
		}
		x.res.add(check{"named " + r.name, named, detail})
	}
}

// watchCommits samples the coordinator's pointsd sessions until end and
// returns the longest a COMMIT was seen running; it notes the longest
// statement of any kind.
func (x *sc) watchCommits(ctx context.Context, end time.Time) time.Duration {
	var longest, longestAny time.Duration
	var what string
	for time.Now().Before(end) {
		var commit, any *float64
		var query *string
		err := x.e.pg.db.QueryRow(ctx, `SELECT
			max(extract(epoch FROM now() - query_start)) FILTER (WHERE query ~* '^\s*commit'),
			max(extract(epoch FROM now() - query_start)),
			(array_agg(application_name || ': ' || left(regexp_replace(query, '\s+', ' ', 'g'), 40) ORDER BY query_start))[1]
			FROM pg_stat_activity WHERE application_name LIKE 'pointsd%' AND state = 'active'`).Scan(&commit, &any, &query)
		if err == nil && commit != nil {
			longest = max(longest, time.Duration(*commit*float64(time.Second)))
		}
		if err == nil && any != nil && time.Duration(*any*float64(time.Second)) > longestAny {
			longestAny, what = time.Duration(*any*float64(time.Second)), *query
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			break
		}
	}
	if what != "" {
		x.res.notef("the longest pointsd statement on the coordinator during the fault: %.1f s, %q", longestAny.Seconds(), what)
	}
	return longest
}

// noPreparedLeft checks that no two-phase commit stays prepared on a
// worker once it is back: Citus's recovery finishes the one the fault
// left, within its interval.
func (x *sc) noPreparedLeft(ctx context.Context, within time.Duration) {
	deadline := time.Now().Add(within)
	var n int64
	var err error
	for {
		n, err = preparedOnWorkers(ctx, x.e.pg.db)
		if err == nil && n == 0 {
			x.res.add(check{"prepared", true, fmt.Sprintf("no two-phase commit left prepared on a worker %.1f s after the heal",
				time.Since(x.res.faultEnd).Seconds())})
			return
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 250*time.Millisecond) {
			break
		}
	}
	detail := fmt.Sprintf("%d two-phase commits still prepared on the workers %s after the heal", n, within)
	if err != nil {
		detail = "count the workers' prepared transactions: " + err.Error()
	}
	x.res.add(check{"prepared", false, detail})
}

func preparedOnWorkers(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n, failed int64
	err := db.QueryRow(ctx, `SELECT coalesce(sum(result::bigint) FILTER (WHERE success), 0), count(*) FILTER (WHERE NOT success)
		FROM run_command_on_workers($$SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()$$)`).Scan(&n, &failed)
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d workers did not answer", failed)
	}
	return n, err
}

// hasCitus reports whether db has the citus extension: the invariants read
// a distributed users table differently (a row's tableoid is a shard's on
// a worker, and users joins no local table).
func hasCitus(ctx context.Context, db *pgxpool.Pool) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')`).Scan(&ok)
	return ok, err
}

// drawsOffCitus is drawsOff on Citus: a statement per bucket, on its
// partition, with the cycle and seed the bucket records. Citus has no
// distributed snapshot, so a bucket rewritten meanwhile, or caught between
// its coordinator's commit and its workers' (milliseconds), can look off:
// a bucket counts as off only if it still is, with the same cycle and
// seed, a moment later.
func drawsOffCitus(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	rows, err := db.Query(ctx, `SELECT bucket, partition::text FROM buckets ORDER BY bucket`)
	if err != nil {
		return 0, err
	}
	type bucket struct {
		Index int
		Part  string
	}
	buckets, err := pgx.CollectRows(rows, pgx.RowToStructByPos[bucket])
	if err != nil {
		return 0, err
	}
	var total int64
	for _, b := range buckets {
		off, err := bucketOff(ctx, db, b.Index, b.Part)
		if err != nil {
			return 0, err
		}
		total += off
	}
	return total, nil
}

// bucketOff counts the users of one bucket off its draw, steadily (see
// drawsOffCitus).
func bucketOff(ctx context.Context, db *pgxpool.Pool, bucket int, part string) (int64, error) {
	type reading struct{ cycle, seed, off int64 }
	read := func() (reading, error) {
		var r reading
		if err := db.QueryRow(ctx, `SELECT cycle, seed FROM buckets WHERE bucket = $1`, bucket).Scan(&r.cycle, &r.seed); err != nil {
			return r, err
		}
		err := db.QueryRow(ctx, `SELECT count(*) FROM `+part+` WHERE points <> pointsd_bucket_draw(id, $1, $2)`, r.cycle, r.seed).Scan(&r.off)
		return r, err
	}
	prev, err := read()
	for try := 0; err == nil && prev.off > 0 && try < 5; try++ {
		sleepCtx(ctx, 200*time.Millisecond)
		var now reading
		if now, err = read(); err == nil && now == prev {
			return now.off, nil // off, and steadily so
		}
		prev = now
	}
	return prev.off, err
}
