package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pointsd/pointsd/httpapi"
	pgsql "github.com/pointsd/pointsd/sql"
)

// shutdownTimeout bounds draining requests in flight on SIGTERM.
const shutdownTimeout = 5 * time.Second

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[flags]",
		"Migrates the schema, serves HTTP and, when leader among replicas, runs the updater.")
	addr := fs.String("addr", "127.0.0.1:4000", "HTTP listen address")
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return usageError{fmt.Sprintf("pointsd serve: invalid -addr %q: %v", *addr, err)}
	}
	log := newLogger(stderr)

	pool, err := connect(ctx, getenv, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pgsql.Migrate(ctx, pool, 0, log); err != nil {
		return err
	}
	api, err := httpapi.New(httpapi.Config{Pool: pool, Logger: log})
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

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
