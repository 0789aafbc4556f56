package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// shutdownTimeout bounds draining requests in flight on SIGTERM.
const shutdownTimeout = 5 * time.Second

// server is what serveUntilDone runs.
type server struct {
	addr, debugAddr string
	shutdownDelay   time.Duration
	api             *httpapi.API
	upd             *updater.Updater
	pool            *pgxpool.Pool // a direct pool, to migrate with (a transaction pooler would strand the migration lock)
	clock           *pgsql.Clock  // the database's clock, synced on pool from the start
	log             *slog.Logger
}

// serveUntilDone listens, prepares the database and runs the updater, the
// change listener and the database clock's syncs beside the HTTP server
// until ctx ends; then it turns /readyz 503, stops the updater, waits the
// shutdown delay and drains.
func serveUntilDone(ctx context.Context, s server) error {
	srv := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.log.Info("serving", slog.String("addr", ln.Addr().String()))
	var debug *http.Server
	if s.debugAddr != "" {
		if debug, err = serveDebug(ctx, s.debugAddr, s.log); err != nil {
			_ = ln.Close()
			return err
		}
	}

	// Once the database answers and is migrated, the updater (when leader)
	// and the change listener run beside the server until shutdown. Until
	// then the server answers /healthz, and 503 for the rest.
	uctx, stopUpdater := context.WithCancel(ctx)
	defer stopUpdater()
	var bg sync.WaitGroup
	bg.Go(func() { s.clock.Run(uctx, s.pool, pgsql.ClockSyncEvery) })
	bg.Go(func() {
		if !prepare(uctx, s.pool, s.upd, s.log) {
			return
		}
		var run sync.WaitGroup
		run.Go(func() { s.upd.Run(uctx) })
		run.Go(func() { s.api.Listen(uctx) })
		run.Wait()
	})
	// The query-time publisher runs until the server has drained, so that
	// the queries answered during the shutdown delay count for the cluster.
	pctx, stopPublisher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPublisher()
	publisherDone := make(chan struct{})
	go func() { s.api.PublishQueryTimes(pctx); close(publisherDone) }()
	updaterDone := make(chan struct{})
	go func() { bg.Wait(); close(updaterDone) }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		stopUpdater()
		stopPublisher()
		<-updaterDone
		<-publisherDone
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Unready first, so that load balancers stop sending requests while
	// they are still served; meanwhile the updater takes no new bucket and
	// lets the one in flight finish, so another replica leads at once.
	s.log.Info("shutting down: /readyz answers 503", slog.Duration("drain_in", s.shutdownDelay))
	s.api.Drain()
	stopUpdater()
	time.Sleep(s.shutdownDelay)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if debug != nil {
		_ = debug.Shutdown(sctx)
	}
	stopPublisher()
	<-publisherDone
	<-updaterDone
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveDebug serves net/http/pprof on addr, a listener of its own: never on
// the main one, which anyone who can query may reach.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on -debug-addr: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving pprof", slog.String("debug_addr", ln.Addr().String()))
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// prepare waits for the database, then migrates it and repairs what it
// can, retrying every second at most, with a warning at most every 5 s.
// It reports false if ctx ended first.
func prepare(ctx context.Context, pool *pgxpool.Pool, upd *updater.Updater, log *slog.Logger) bool {
	var warned time.Time
	err := retry(ctx, 365*24*time.Hour, func() error {
		err := ping(ctx, pool)
		if err == nil {
			err = pgsql.Migrate(ctx, pool, 0, log)
		}
		if pgsql.PoolerRefusal(err) {
			upd.CannotLead(pgsql.PoolerProblem) // and cannot migrate: said in /readyz
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
