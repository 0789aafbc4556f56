package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/metrics"
	pgsql "github.com/pointsd/pointsd/sql"
	"github.com/pointsd/pointsd/updater"
)

// shutdownTimeout bounds draining requests in flight on SIGTERM.
const shutdownTimeout = 5 * time.Second

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[flags]",
		"Migrates the schema, serves HTTP and, when leader among replicas, runs the updater.")
	addr := fs.String("addr", "127.0.0.1:4000", "HTTP listen address")
	mode := updater.Rolling
	fs.TextVar(&mode, "mode", updater.Rolling, "set the cluster's update mode at startup: rolling (one transaction per bucket, spread across the period)\n"+
		"or strict (one transaction); when not given, the mode stored in the database stands (see pointsd mode)")
	period := fs.Duration("period", updater.DefaultPeriod, "time between cycle starts (cycles start on wall-clock multiples of it), at least 100ms")
	workers := fs.Int("workers", updater.DefaultWorkers, "buckets updated at once, 1..64")
	slow := fs.Duration("slow-cycle", updater.DefaultSlowCycle, "log a warning for cycles slower than this")
	useCache := fs.Bool("cache", true, "answer GET / from memory while the answer is known to hold; -cache=false reads the database per request")
	maxAge := fs.Duration("cache-max-age", time.Second, "longest a cached answer is reused, whatever the schedule says")
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return usageError{fmt.Sprintf("pointsd serve: invalid -addr %q: %v", *addr, err)}
	}
	if *period < 100*time.Millisecond {
		return usageError{fmt.Sprintf("pointsd serve: -period must be at least 100ms, got %v", *period)}
	}
	if *workers < 1 || *workers > 64 {
		return usageError{fmt.Sprintf("pointsd serve: -workers must be between 1 and 64, got %d", *workers)}
	}
	if *slow <= 0 {
		return usageError{fmt.Sprintf("pointsd serve: -slow-cycle must be positive, got %v", *slow)}
	}
	if *maxAge <= 0 {
		return usageError{fmt.Sprintf("pointsd serve: -cache-max-age must be positive, got %v", *maxAge)}
	}
	log := newLogger(stderr)

	// The pools connect on demand: serve starts whether or not the
	// database is up, and waits for it.
	pool, err := openPool(getenv, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The updater has its own connections, so that queries and updates
	// cannot starve each other.
	upool, err := openPool(getenv, int32(*workers+2))
	if err != nil {
		return err
	}
	defer upool.Close()

	m := metrics.New()
	if err := errors.Join(m.RegisterPool("query", pool), m.RegisterPool("updater", upool)); err != nil {
		return err
	}
	var api *httpapi.API
	if !isSet(fs, "mode") {
		mode = "" // the cluster's stored mode stands
	}
	upd, err := updater.New(updater.Config{Pool: upool, Metrics: m, Logger: log,
		Mode: mode, Period: *period, Workers: *workers, SlowCycle: *slow,
		OnCommit: func(bucket int) { api.Committed(bucket) }})
	if err != nil {
		return err
	}
	api, err = httpapi.New(httpapi.Config{Pool: pool, Logger: log, Metrics: m, Updater: upd,
		NoCache: !*useCache, CacheMaxAge: *maxAge})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("serving", slog.String("addr", ln.Addr().String()))

	// Once the database answers and is migrated, the updater (when leader)
	// and the change listener run beside the server until shutdown. Until
	// then the server answers /healthz, and 503 for the rest.
	uctx, stopUpdater := context.WithCancel(ctx)
	defer stopUpdater()
	var bg sync.WaitGroup
	bg.Go(func() {
		if !prepare(uctx, pool, log) {
			return
		}
		var run sync.WaitGroup
		run.Go(func() { upd.Run(uctx) })
		run.Go(func() { api.Listen(uctx) })
		run.Wait()
	})
	updaterDone := make(chan struct{})
	go func() { bg.Wait(); close(updaterDone) }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		stopUpdater()
		<-updaterDone
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	// The updater takes no new bucket and lets the one in flight finish,
	// while the server drains its requests.
	stopUpdater()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-updaterDone
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// prepare waits for the database, then migrates it and repairs what it
// can, retrying every second at most, with a warning at most every 5 s.
// It reports false if ctx ended first.
func prepare(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) bool {
	var warned time.Time
	err := retry(ctx, 365*24*time.Hour, func() error {
		err := ping(ctx, pool)
		if err == nil {
			err = pgsql.Migrate(ctx, pool, 0, log)
		}
		if err != nil && ctx.Err() == nil && time.Since(warned) >= 5*time.Second {
			warned = time.Now()
			log.Warn("waiting for the database: serving 503 until it answers and is migrated", slog.Any("err", err))
		}
		return err
	})
	if err != nil {
		return false // ctx ended
	}
	if !warned.IsZero() {
		log.Info("the database answers and is migrated")
	}
	repaired, err := pgsql.Repair(ctx, pool)
	if err != nil {
		// Queries can still be served; /readyz says what is wrong.
		log.Error("cannot repair the database", slog.Any("err", err))
	}
	for _, r := range repaired {
		log.Warn("repaired the database", slog.String("repair", r))
	}
	return true
}
