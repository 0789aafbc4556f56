package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[flags]",
		"Migrates the schema, serves HTTP and, when leader among replicas, runs the updater.")
	addr := fs.String("addr", "127.0.0.1:4000", "HTTP listen address")
	var mode pointsd.Mode // none: the cluster's stored mode stands
	fs.TextVar(&mode, "mode", mode, "set the cluster's update mode at startup: rolling (one transaction per bucket, spread across the period)\n"+
		"or strict (one transaction); when not given, the mode stored in the database stands (see pointsd mode)")
	period := fs.Duration("period", updater.DefaultPeriod, fmt.Sprintf("time between cycle starts (cycles start on wall-clock multiples of it), at least %v", updater.MinPeriod))
	workers := fs.Int("workers", updater.DefaultWorkers, fmt.Sprintf("buckets updated at once, 1..%d", updater.MaxWorkers))
	slow := fs.Duration("slow-cycle", updater.DefaultSlowCycle, "log a warning for cycles whose work takes longer than this")
	useCache := fs.Bool("cache", true, "answer GET / from memory while the answer is known to hold; -cache=false reads the database per request")
	maxAge := fs.Duration("cache-max-age", time.Second, "a cached answer older than this is read again (in the background while the schedule says it holds)")
	queryTime := fs.String("query-time", "cluster", "GET /'s timestamp: cluster, the previous query to any replica (each replica writes its latest\n"+
		"query time at most every 100ms while queried), or replica, this replica's previous query (no writes)")
	delay := fs.Duration("shutdown-delay", 2*time.Second, "on SIGTERM, how long /readyz answers 503 while requests are still served, so that load balancers stop sending them; then the server drains")
	debugAddr := fs.String("debug-addr", "", "serve net/http/pprof on this address, never on -addr (a bare :port binds loopback); off when empty")
	level := addLogLevel(fs)
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return usageError{fmt.Sprintf("pointsd serve: invalid -addr %q: %v", *addr, err)}
	}
	if err := updater.ValidatePeriod(*period); err != nil {
		return usageError{"pointsd serve: -period " + err.Error()}
	}
	if err := updater.ValidateWorkers(*workers); err != nil {
		return usageError{"pointsd serve: -workers " + err.Error()}
	}
	if *slow <= 0 {
		return usageError{fmt.Sprintf("pointsd serve: -slow-cycle must be positive, got %v", *slow)}
	}
	if *maxAge <= 0 {
		return usageError{fmt.Sprintf("pointsd serve: -cache-max-age must be positive, got %v", *maxAge)}
	}
	if *queryTime != "cluster" && *queryTime != "replica" {
		return usageError{fmt.Sprintf("pointsd serve: -query-time must be cluster or replica, got %q", *queryTime)}
	}
	if *delay < 0 || *delay > time.Minute {
		return usageError{fmt.Sprintf("pointsd serve: -shutdown-delay must be between 0 and 1m, got %v", *delay)}
	}
	if *debugAddr != "" {
		host, _, err := net.SplitHostPort(*debugAddr)
		if err != nil {
			return usageError{fmt.Sprintf("pointsd serve: invalid -debug-addr %q: %v", *debugAddr, err)}
		}
		if host == "" {
			*debugAddr = "127.0.0.1" + *debugAddr
		}
	}
	log := newLogger(stderr, level.Level)

	// The pools connect on demand: serve starts whether or not the
	// database is up, and waits for it.
	// Every session of this process is named after its instance, so that
	// a follower evicting it as a stale leader ends exactly its sessions.
	instance := updater.NewInstance()
	pool, err := openPool(getenv, 0, session{name: pgsql.SessionName(pgsql.QuerySession, instance)})
	if err != nil {
		return err
	}
	defer pool.Close()
	// The updater has its own connections, so that queries and updates
	// cannot starve each other: direct, and bounded for its work.
	// ValidateWorkers keeps *workers to 1..MaxWorkers.
	upool, err := openPool(getenv, int32(*workers+2), session{ //nolint:gosec // G115: bounded above
		name:   pgsql.SessionName(pgsql.UpdaterSession, instance),
		direct: true, limits: updater.SessionLimits(*period)})
	if err != nil {
		return err
	}
	defer upool.Close()

	m := metrics.New()
	b := readBuildInfo()
	if err := errors.Join(m.RegisterPool("query", pool), m.RegisterPool("updater", upool),
		m.RegisterHorizon(pool), m.RegisterBuildInfo(b.Version, b.Revision, b.GoVersion)); err != nil {
		return err
	}
	// dbClock is the process's one measure of the database's clock (run
	// in the background by serveUntilDone): the leader publishes and
	// sleeps on it, and the cache decides its reuse window on it.
	dbClock := pgsql.NewClock(nil)
	api, err := httpapi.New(httpapi.Config{Pool: pool, Direct: upool, Logger: log, Metrics: m,
		NoCache: !*useCache, CacheMaxAge: *maxAge, Clock: dbClock, Instance: instance, ReplicaQueryTime: *queryTime == "replica"})
	if err != nil {
		return err
	}
	// The wiring goes one way: the updater tells the API of its commits,
	// its leadership and the damage it finds. The leader's own commits
	// drop its cached answer at once. The other replicas hear of them by
	// NOTIFY.
	upd, err := updater.New(updater.Config{Pool: upool, Metrics: m, Logger: log, Instance: instance, Clock: dbClock,
		Mode: mode, Period: *period, Workers: *workers, SlowCycle: *slow, Listener: api})
	if err != nil {
		return err
	}
	dbc := pool.Config().ConnConfig
	log.Info("starting pointsd", slog.String("version", b.Version), slog.String("revision", b.Revision),
		slog.String("go", b.GoVersion), slog.String("addr", *addr), slog.String("mode", cmp.Or(mode.String(), "(the cluster's)")),
		slog.Duration("period", *period), slog.Int("workers", *workers), slog.Duration("slow_cycle", *slow),
		slog.Bool("cache", *useCache), slog.Duration("cache_max_age", *maxAge), slog.String("query_time", *queryTime), slog.Duration("shutdown_delay", *delay),
		slog.String("debug_addr", *debugAddr), slog.String("log_level", level.String()),
		// The database, never its password.
		slog.String("database", fmt.Sprintf("%s@%s/%s", dbc.User, net.JoinHostPort(dbc.Host, strconv.Itoa(int(dbc.Port))), dbc.Database)))
	return serveUntilDone(ctx, server{
		addr: *addr, debugAddr: *debugAddr, shutdownDelay: *delay,
		api: api, upd: upd, pool: upool, clock: dbClock, log: log,
	})
}
