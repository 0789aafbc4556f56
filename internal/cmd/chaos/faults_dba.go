package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Faults an operator or a DBA brings about: long locks, a long snapshot, a
// role's statement_timeout, a full disk (raised by a trigger).

// session opens a connection of the harness's own, apart from its pool.
func (x *sc) session(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(x.e.pg.url)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "chaos"
	cfg.ConnectTimeout = 3 * time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

// bucketPartition is the partition of bucket 7, by name.
func (x *sc) bucketPartition(ctx context.Context) (string, error) {
	var part string
	err := x.e.pg.db.QueryRow(ctx, `SELECT partition::text FROM buckets WHERE bucket = 7`).Scan(&part)
	return part, err
}

// queued holds ACCESS SHARE on table in one session (as pg_dump or a long
// report would) and runs stmt, which needs ACCESS EXCLUSIVE, in another, so
// that stmt waits in the lock queue and every later lock on table waits
// behind it; after hold the first session commits and stmt runs.
func (x *sc) queued(ctx context.Context, table, stmt string, hold time.Duration) error {
	holder, err := x.session(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = holder.Close(context.Background()) }() // ends its transaction if still open
	waiter, err := x.session(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = waiter.Close(context.Background()) }() // likewise
	if _, err := holder.Exec(ctx, `BEGIN`); err != nil {
		return err
	}
	if _, err := holder.Exec(ctx, `SELECT 1 FROM `+table+` LIMIT 1`); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, stmt)
		done <- err
	}()
	if !sleepCtx(ctx, hold) {
		return ctx.Err()
	}
	if _, err := holder.Exec(ctx, `COMMIT`); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not finish within 30 s of the lock's release", stmt)
	}
}

// heldLocks queues a VACUUM FULL of one partition, then an ALTER TABLE
// users, each behind a transaction reading the table, for two periods
// each, under two rolling replicas.
func heldLocks(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 2); err != nil {
		return err
	}
	part, err := x.bucketPartition(ctx)
	if err != nil {
		return err
	}
	if err := x.waitCycles(ctx, 1); err != nil {
		return err
	}
	hold := 2 * x.period
	x.faultBegins(ctx)
	if err := x.queued(ctx, part, `VACUUM FULL `+part, hold); err != nil {
		return fmt.Errorf("VACUUM FULL: %w", err)
	}
	mid := time.Now()
	// A bucket UPDATE locks its partition, then the parent (for the
	// partition constraint): pointsd takes the parent first, so the ALTER
	// goes through as soon as its reader ends. A deadlock (40P01) would
	// say it does not.
	var pgErr *pgconn.PgError
	switch err := x.queued(ctx, "users", `ALTER TABLE users ADD COLUMN chaos_note text`, hold); {
	case errors.As(err, &pgErr) && pgErr.Code == "40P01":
		x.res.add(check{"no deadlock", false, "the ALTER TABLE was cancelled by PostgreSQL's deadlock detection: " + pgErr.Detail})
	case err != nil:
		return fmt.Errorf("ALTER TABLE: %w", err)
	}
	x.faultEnds()
	if _, err := x.e.pg.db.Exec(ctx, `ALTER TABLE users DROP COLUMN IF EXISTS chaos_note`); err != nil {
		return err
	}
	x.res.didf("2 replicas, rolling; `VACUUM FULL %s` queued %s behind a transaction reading it, then `ALTER TABLE users ADD COLUMN` queued %s behind one reading users",
		part, hold, hold)
	var slowest time.Duration
	for _, o := range x.prober.snapshot() {
		if o.path == "/" && !o.sent.Before(x.res.faultStart) && o.sent.Before(x.res.faultEnd) {
			slowest = max(slowest, o.done.Sub(o.sent))
		}
	}
	x.res.notef("slowest GET / during the fault: %.2f s (VACUUM FULL queued %s–%s, ALTER %s–%s)",
		slowest.Seconds(), clock(x.res.faultStart), clock(mid), clock(mid), clock(x.res.faultEnd))
	// While the ALTER is queued no write to users can happen (its lock on
	// the parent is queued ahead of theirs): cycles must go on through the
	// VACUUM FULL, which locks one partition, and resume after the ALTER.
	// A cycle whose locked buckets were still locked at its period's end
	// is cut short, said so in the log, and the next rewrites them.
	x.conclude(ctx, concludeOpts{cutShort: true})
	x.boundariesBetween(ctx, x.res.faultStart, mid, "while VACUUM FULL was queued and ran")
	return nil
}

// oldSnapshot holds a REPEATABLE READ snapshot for ten periods under two
// rolling replicas: cycles go on, and the replicas should name it.
func oldSnapshot(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 2); err != nil {
		return err
	}
	if err := x.waitCycles(ctx, 1); err != nil {
		return err
	}
	size := func() int64 {
		var n int64
		_ = x.e.pg.db.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(partition)), 0)::bigint FROM buckets`).Scan(&n)
		return n
	}
	before := size()
	s, err := x.session(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close(context.Background()) }() // ends the snapshot if still open
	x.faultBegins(ctx)
	if _, err := s.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ`); err != nil {
		return err
	}
	if _, err := s.Exec(ctx, `SELECT count(*) FROM users`); err != nil {
		return err
	}
	// Ten periods, and past pointsd's threshold for naming one (a minute)
	// by half as much again, whatever the period.
	hold := max(10*x.period, oldSnapshotHold)
	var age float64
	var problem, hasGauge, hasCheck bool
	for time.Since(x.res.faultStart) < hold {
		if !sleepCtx(ctx, x.period) {
			return ctx.Err()
		}
		for _, r := range x.replicas {
			_, body, err := r.metrics(ctx)
			if err != nil {
				continue
			}
			families, err := parseMetrics(body)
			if err != nil {
				continue
			}
			a, ok := gaugeValue(families, "pointsd_oldest_snapshot_age_seconds")
			hasGauge = hasGauge || ok
			age = max(age, a)
			for _, m := range labelled(families["pointsd_state_problems"], "check", namesSnapshot) {
				hasCheck = true
				problem = problem || m.GetGauge().GetValue() > 0
			}
		}
	}
	if _, err := s.Exec(ctx, `COMMIT`); err != nil {
		return err
	}
	x.faultEnds()
	after := size()
	x.res.didf("2 replicas, rolling; a REPEATABLE READ transaction holds its snapshot for %s (at least 10 periods)", hold)
	x.res.notef("users grew from %s to %s while the snapshot was held", mib(before), mib(after))
	switch {
	case !hasGauge && !hasCheck:
		x.res.notef("not yet verifiable: no replica exports pointsd_oldest_snapshot_age_seconds or a snapshot check in pointsd_state_problems")
	default:
		ok := problem && age >= float64(time.Minute/time.Second)
		x.res.add(check{"named", ok, fmt.Sprintf("pointsd_oldest_snapshot_age_seconds up to %.0f s (exported: %v); a snapshot problem in pointsd_state_problems: %v", age, hasGauge, problem)})
	}
	x.conclude(ctx, concludeOpts{})
	x.boundariesDuringFault(ctx)
	return nil
}

// namesSnapshot says whether a check of pointsd_state_problems is about
// an old snapshot.
func namesSnapshot(check string) bool { return strings.Contains(check, "snapshot") }

// oldSnapshotHold is the shortest hold of the old-snapshot scenario:
// pointsd names a snapshot older than a minute (pgsql.OldSnapshotAfter).
const oldSnapshotHold = 90 * time.Second

// roleTimeoutUsers makes a strict UPDATE outlast 500 ms on this machine
// (1.1–1.7 s at 1M, docs/BENCHMARKS.md).
const roleTimeoutUsers = 1_000_000

// roleStatementTimeout runs two strict replicas as a role whose default
// statement_timeout is 500 ms, with enough users that the strict UPDATE
// takes longer: strict cycles must still commit.
func roleStatementTimeout(ctx context.Context, x *sc) error {
	if out, err := runPointsd(ctx, x.e.cfg.pointsd, x.e.pg.url, "seed", "-users", fmt.Sprint(roleTimeoutUsers)); err != nil {
		return fmt.Errorf("seed %d users: %w: %s", roleTimeoutUsers, err, lastLine(out))
	}
	x.users = roleTimeoutUsers // the next scenario's restore recreates the database
	db := x.e.pg.db
	for _, stmt := range []string{
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chaos_app') THEN CREATE ROLE chaos_app LOGIN SUPERUSER; END IF;
		END $$`,
		`ALTER ROLE chaos_app SET statement_timeout = '500ms'`,
	} {
		if _, err := db.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	defer func() { _, _ = db.Exec(context.Background(), `ALTER ROLE chaos_app RESET statement_timeout`) }() // the next scenario's role is postgres
	appURL := strings.Replace(x.e.pg.url, "://postgres@", "://chaos_app@", 1)
	x.faultBegins(ctx)
	if err := x.startSpecs(ctx, replicaSpec{mode: "strict", dbURL: appURL}, replicaSpec{mode: "strict", dbURL: appURL}); err != nil {
		return err
	}
	x.res.didf("%d users; 2 replicas, strict, as role `chaos_app` with `ALTER ROLE chaos_app SET statement_timeout = '500ms'`", roleTimeoutUsers)
	_ = x.waitCycles(ctx, 2) // judged by the cycles check below
	x.faultEnds()
	var last *float64
	_ = db.QueryRow(ctx, `SELECT last_duration FROM cycle_state`).Scan(&last)
	if last != nil {
		x.res.notef("the last strict cycle took %.2f s (the role's timeout: 0.5 s)", *last)
	}
	var lines []string
	for _, r := range x.replicas {
		lines = append(lines, logLines(r.logPath, x.res.faultStart, time.Now(), "WARN", "ERROR")...)
	}
	if len(lines) > 0 {
		x.res.notef("%d WARN/ERROR lines, first: %s", len(lines), lines[0])
	}
	x.conclude(ctx, concludeOpts{firstDue: x.res.faultStart.Add(x.period + 2*time.Second)})
	return nil
}

// diskFullTrigger makes every update of one partition fail with SQLSTATE
// 53100 (disk full) for three periods: the other buckets commit, the error
// is named, the leader stays.
func diskFullTrigger(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 2); err != nil {
		return err
	}
	leader, err := x.leader(ctx)
	if err != nil {
		return err
	}
	part, err := x.bucketPartition(ctx)
	if err != nil {
		return err
	}
	if err := x.waitCycles(ctx, 1); err != nil {
		return err
	}
	db := x.e.pg.db
	if _, err := db.Exec(ctx, `CREATE OR REPLACE FUNCTION chaos_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION USING ERRCODE = '53100', MESSAGE = 'could not extend file: No space left on device (chaos)'; END $$`); err != nil {
		return err
	}
	x.faultBegins(ctx)
	if _, err := db.Exec(ctx, `CREATE TRIGGER chaos_disk_full BEFORE UPDATE ON `+part+` FOR EACH ROW EXECUTE FUNCTION chaos_disk_full()`); err != nil {
		return err
	}
	defer func() { _, _ = db.Exec(context.Background(), `DROP TRIGGER IF EXISTS chaos_disk_full ON `+part) }() // whatever happens
	changes := 0
	for time.Since(x.res.faultStart) < 3*x.period {
		if r, _, err := leaderOf(ctx, x.replicas, time.Second); err == nil && r != leader {
			changes++
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
	if _, err := db.Exec(ctx, `DROP TRIGGER chaos_disk_full ON `+part); err != nil {
		return err
	}
	x.faultEnds()
	x.res.didf("2 replicas, rolling; a BEFORE UPDATE trigger on %s raising SQLSTATE 53100 (disk full) for %s", part, 3*x.period)
	var others, failing, total int
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT part) FILTER (WHERE part <> $1), count(*) FILTER (WHERE part = $1),
			(SELECT count(*) FROM buckets)
		FROM chaos_truth WHERE kind = 'bucket' AND op = 'UPDATE' AND at >= $2 AND at < $3`,
		part, x.res.faultStart, x.res.faultEnd).Scan(&others, &failing, &total); err != nil {
		return err
	}
	x.res.add(check{"other buckets", others == total-1 && failing == 0,
		fmt.Sprintf("%d of the %d other buckets committed during the fault, %s %d times", others, total-1, part, failing)})
	x.res.add(check{"leader stays", changes == 0, fmt.Sprintf("%s led throughout: another replica was seen leading %d times", leader.name, changes)})
	// The injected error says "No space left on device", not "disk": a
	// line that says disk is pointsd's own naming of the error class.
	var named, unnamed []string
	for _, line := range rawLogLines(leader.logPath, x.res.faultStart, time.Now()) {
		switch {
		case strings.Contains(strings.ToLower(line), "disk"):
			named = append(named, line)
		case strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`):
			unnamed = append(unnamed, line)
		}
	}
	switch {
	case len(named) > 0:
		x.res.add(check{"named", true, fmt.Sprintf("%d log lines name the disk, first: %s", len(named), fromMsg(named[0]))})
	case len(unnamed) > 0:
		x.res.add(check{"named", false, fmt.Sprintf("no log line says disk; %d WARN/ERROR lines, first: %s", len(unnamed), fromMsg(unnamed[0]))})
	default:
		x.res.add(check{"named", false, "no WARN/ERROR line during the fault"})
	}
	x.conclude(ctx, concludeOpts{since: x.res.faultEnd})
	return nil
}

// rawLogLines returns a replica's log lines logged in [from, to), whole.
func rawLogLines(path string, from, to time.Time) []string {
	var out []string
	for _, line := range strings.Split(readFile(path), "\n") {
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil && !l.Time.Before(from) && l.Time.Before(to) {
			out = append(out, line)
		}
	}
	return out
}

// fromMsg is a JSON log line from its message on, shortened.
func fromMsg(line string) string {
	if i := strings.Index(line, `"msg":`); i >= 0 {
		line = line[i:]
	}
	if len(line) > 240 {
		line = line[:240] + "…"
	}
	return line
}
