package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/term"

	pgsql "github.com/pointsd/pointsd/sql"
)

// connectTimeout bounds the first connection: an unreachable database is a
// clear error, not a hang.
const connectTimeout = 10 * time.Second

// connect opens a pool on DATABASE_URL and checks that it answers.
func connect(ctx context.Context, getenv func(string) string, maxConns int32) (*pgxpool.Pool, error) {
	url := getenv("DATABASE_URL")
	if url == "" {
		return nil, usageError{"pointsd: DATABASE_URL is not set (a libpq URL or key=value string)"}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usageError{"pointsd: DATABASE_URL: " + err.Error()}
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "pointsd"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		// A timeout names no host by itself.
		at := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
		return nil, fmt.Errorf("database unreachable (%s, database %q): %w", at, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// requireSchema fails with what to run when the schema is missing or old.
func requireSchema(ctx context.Context, pool *pgxpool.Pool) error {
	cur, latest, err := pgsql.SchemaVersion(ctx, pool)
	if err != nil {
		return err
	}
	if cur < latest {
		return fmt.Errorf("schema is not current (version %d of %d): run pointsd migrate first", cur, latest)
	}
	return nil
}

// newLogger logs text on a terminal, JSON otherwise.
func newLogger(w io.Writer) *slog.Logger {
	if isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
