package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pointsd/pointsd/internal/host"
)

// env is one run: the cluster, the replicas alive, where logs go.
type env struct {
	cfg     config
	pg      *cluster
	logDir  string
	nofile  uint64
	pgLog   *os.File
	current string // the scenario running, names its replicas' logs
	// netnsErr says why there is no network namespace (netns.go); nil
	// when there is one.
	netnsErr error

	mu       sync.Mutex
	replicas []*replica // every replica started and not yet reaped
	seq      int
}

// newEnv starts the cluster and creates a seeded database. On error the
// returned env (if any) must still be closed.
func newEnv(ctx context.Context, c config) (*env, error) {
	e := &env{cfg: c, logDir: filepath.Join(c.dir, "logs")}
	n, err := raiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("raise the open-files limit: %w", err)
	}
	e.nofile = n
	if err := os.RemoveAll(e.logDir); err != nil {
		return nil, err
	}
	// The server runs as the postgres user when the harness is root: it
	// must be able to enter the working folder to reach its cluster.
	if err := os.MkdirAll(c.dir, 0o755); err != nil { //nolint:gosec // see above
		return nil, err
	}
	if err := os.MkdirAll(e.logDir, 0o750); err != nil {
		return nil, err
	}
	if e.pgLog, err = os.Create(filepath.Join(e.logDir, "pg_ctl.log")); err != nil {
		return nil, err
	}
	var extra map[string]string
	if e.netnsErr = setupNetns(ctx); e.netnsErr == nil {
		extra = netnsSettings()
	} else {
		log.Printf("no network namespace (%v): its scenarios will not run", e.netnsErr)
	}
	log.Printf("starting PostgreSQL in %s", filepath.Join(c.dir, "pg"))
	if e.pg, err = startCluster(ctx, filepath.Join(c.dir, "pg"), e.pgLog, extra); err != nil {
		return e, err
	}
	if e.netnsErr == nil {
		e.netnsErr = allowNetns(ctx, e.pg)
	}
	log.Printf("creating %s: migrate, seed %d users", dbName, c.users)
	start := time.Now()
	if err := e.pg.resetDB(ctx, c.pointsd, c.users); err != nil {
		return e, err
	}
	log.Printf("database ready in %s", time.Since(start).Round(time.Millisecond))
	return e, nil
}

// close kills every replica and stops the cluster.
func (e *env) close() {
	e.killAll()
	if e.pg != nil {
		e.pg.close()
	}
	if e.pgLog != nil {
		_ = e.pgLog.Close() // the last of pg_ctl's output; nothing to do on error
	}
	cleanupNetns()
}

// restore makes the cluster healthy for the next scenario: no replica
// running, PostgreSQL up, and the database undamaged (recreated otherwise).
func (e *env) restore(ctx context.Context) error {
	e.stopAll(ctx)
	if e.netnsErr == nil {
		_ = blackhole(ctx, false) // a scenario cut short may have left it on
	}
	if !e.pg.running(ctx) {
		log.Print("   restore: PostgreSQL is down, starting it")
		if err := e.pg.start(ctx); err != nil {
			return err
		}
	}
	why := e.damage(ctx)
	if why == "" {
		return nil
	}
	log.Printf("   restore: recreating the database (%s)", why)
	return e.pg.resetDB(ctx, e.cfg.pointsd, e.cfg.users)
}

// damage says what is wrong with the database, "" if nothing: the users
// invariants, one cycle_state row, buckets not ahead of it, every bucket's
// partition present, the cycle history recording.
func (e *env) damage(ctx context.Context) string {
	db := e.pg.db
	if db == nil {
		return "no connection"
	}
	if ck := checkUsers(ctx, db, e.cfg.users); !ck.ok {
		return ck.detail
	}
	if off, err := drawsOff(ctx, db); (err != nil && !errors.Is(err, errNoBucketDraw)) || off > 0 {
		return checkDraws(ctx, db).detail
	}
	var states, ahead, orphans int
	err := db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM cycle_state),
		(SELECT count(*) FROM buckets b, cycle_state s WHERE b.cycle > s.cycle),
		(SELECT count(*) FROM buckets b LEFT JOIN pg_class c ON c.oid = b.partition WHERE c.oid IS NULL)`).
		Scan(&states, &ahead, &orphans)
	switch {
	case err != nil:
		return err.Error()
	case states != 1:
		return fmt.Sprintf("%d cycle_state rows", states)
	case ahead > 0:
		return fmt.Sprintf("%d buckets ahead of cycle_state", ahead)
	case orphans > 0:
		return fmt.Sprintf("%d buckets without a partition", orphans)
	}
	var future bool
	if err := db.QueryRow(ctx, `SELECT started_at > now() + interval '1 minute' FROM cycle_state`).Scan(&future); err != nil || future {
		return "cycle_state.started_at in the future"
	}
	if !historyInstalled(ctx, db) {
		if err := installHistory(ctx, db); err != nil {
			return err.Error()
		}
	}
	if !truthInstalled(ctx, db) {
		if err := installTruth(ctx, db); err != nil {
			return err.Error()
		}
	}
	return ""
}

// runScenario runs s from a healthy cluster and collects its result. It
// never fails the run: a scenario that cannot run is reported as an error.
func (e *env) runScenario(ctx context.Context, s scenario) *result {
	r := &result{name: s.name, title: s.title, started: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	e.current = s.name
	x := &sc{e: e, res: r, period: e.cfg.period}
	func() {
		if err := e.restore(ctx); err != nil {
			r.err = fmt.Errorf("restore a healthy cluster: %w", err)
			return
		}
		x.watcher = startWatcher(ctx, e.pg.db)
		defer func() { x.watcher.stop() }() // the scenario may have replaced it
		if err := s.run(ctx, x); err != nil {
			r.err = err
		}
	}()
	if x.prober != nil {
		x.prober.stop()
	}
	r.ended = time.Now()
	r.logs = x.countLogs()
	e.stopAll(context.Background())
	return r
}

// machine describes where the run happened, for the report.
type machine struct {
	cores     int
	cpu, mem  string
	pgVersion string
	nofile    uint64
}

func (e *env) describe(ctx context.Context) machine {
	m := machine{cores: runtime.NumCPU(), cpu: host.CPUModel(), mem: host.MemTotal(), pgVersion: "unknown", nofile: e.nofile}
	if e.pg != nil && e.pg.db != nil {
		_ = e.pg.db.QueryRow(ctx, `SELECT version()`).Scan(&m.pgVersion)
		if i := strings.Index(m.pgVersion, " on "); i > 0 {
			m.pgVersion = m.pgVersion[:i]
		}
	}
	return m
}
