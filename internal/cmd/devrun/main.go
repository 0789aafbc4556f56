// Command devrun runs a command against a development database: DATABASE_URL
// when it is set, else a project-local cluster under ./.data started (or
// reused) from the installed PostgreSQL binaries, else a Docker container.
// A cluster it started is stopped cleanly when the command exits.
//
//	go run ./internal/cmd/devrun [-dir .data/pg] [-db pointsd] -- command [args...]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/internal/localpg"
)

func main() {
	if err := run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "devrun:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", ".data/pg", "cluster folder")
	db := flag.String("db", "pointsd", "database to create and use")
	flag.Parse()
	if flag.NArg() == 0 {
		return errors.New("usage: devrun [-dir D] [-db NAME] -- command [args...]")
	}
	ctx := context.Background()

	var srv *localpg.Server
	if os.Getenv("DATABASE_URL") == "" {
		var err error
		srv, err = localpg.Start(ctx, localpg.Config{Dir: *dir, Settings: map[string]string{
			// Room for a 1M-row table in memory, and for checkpoints to
			// stay out of the minutely update's way.
			"shared_buffers": "512MB", "max_wal_size": "4GB", "max_connections": "200",
		}})
		if err != nil {
			return err
		}
		defer func() {
			if err := srv.Stop(context.Background()); err != nil {
				fmt.Fprintln(os.Stderr, "devrun: stop postgres:", err)
			}
		}()
		url, err := ensureDB(ctx, srv.URL, *db)
		if err != nil {
			return err
		}
		how := "reusing the running"
		if srv.Started {
			how = "started"
		}
		fmt.Fprintf(os.Stderr, "devrun: %s PostgreSQL in %s: DATABASE_URL=%s\n", how, *dir, url)
		if err := os.Setenv("DATABASE_URL", url); err != nil {
			return err
		}
	}

	cmd := exec.CommandContext(ctx, flag.Arg(0), flag.Args()[1:]...) //nolint:gosec // runs the command it was given: that is its job
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	// The command gets the signals; devrun waits for it, then stops the
	// cluster.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	signal.Stop(sigs)
	close(sigs)
	return err
}

// ensureDB creates database name on the server unless it exists, and
// returns its URL.
func ensureDB(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(ctx) }() // the queries' errors are what matter
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", err
		}
	}
	cfg := conn.Config()
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name), nil
}
