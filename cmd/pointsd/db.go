package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/pgsql"
)

// connectTimeout bounds one attempt to reach the database: an unreachable
// database is a clear error, not a hang.
const connectTimeout = 10 * time.Second

// session says which connection a pool is for (see pgsql.ConfigureSession).
type session struct {
	name string // application_name
	// direct is a connection to PostgreSQL itself (POINTSD_DIRECT_URL, or
	// DATABASE_URL without it): the leader lock, LISTEN, migrations and
	// updates need one. The query pool may go through a transaction
	// pooler such as PgBouncer.
	direct bool
	limits pgsql.Limits
}

// directURL is the environment variable naming a direct connection to
// PostgreSQL when DATABASE_URL goes through a transaction pooler.
const directURL = "POINTSD_DIRECT_URL"

// openPool makes a pool for s on DATABASE_URL (or, for a direct session,
// POINTSD_DIRECT_URL when set), without connecting yet.
func openPool(getenv func(string) string, maxConns int32, s session) (*pgxpool.Pool, error) {
	name, url := "DATABASE_URL", getenv("DATABASE_URL")
	if u := getenv(directURL); s.direct && u != "" {
		name, url = directURL, u
	}
	if url == "" {
		return nil, usageError{"pointsd: DATABASE_URL is not set (a libpq URL or key=value string)"}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usageError{"pointsd: " + name + ": " + err.Error()}
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pgsql.ConfigureSession(cfg.ConnConfig, s.name, s.direct, s.limits)
	if !s.direct && !strings.Contains(url, "default_query_exec_mode") {
		// No named prepared statements, which a transaction pooler would
		// hand to other clients: one round trip all the same.
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}

// tool is the session of a one-shot command: direct, named after it.
func tool(command string) session { return session{name: "pointsd-" + command, direct: true} }

// ping checks that pool's database answers, naming it when it does not (a
// timeout names no host by itself).
func ping(ctx context.Context, pool *pgxpool.Pool) error {
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		cfg := pool.Config().ConnConfig
		at := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
		return fmt.Errorf("database unreachable (%s, database %q): %w", at, cfg.Database, err)
	}
	return nil
}

// connect opens a pool on DATABASE_URL and checks that it answers, trying
// again for up to wait (0: once) so that scripts can start beside the
// database.
func connect(ctx context.Context, getenv func(string) string, maxConns int32, s session, wait time.Duration) (*pgxpool.Pool, error) {
	pool, err := openPool(getenv, maxConns, s)
	if err != nil {
		return nil, err
	}
	if err := retry(ctx, wait, func() error { return ping(ctx, pool) }); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// retry runs op until it succeeds, ctx ends or wait has passed (0: once),
// backing off up to a second between tries.
func retry(ctx context.Context, wait time.Duration, op func() error) error {
	if wait <= 0 {
		return op()
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, time.Second
	_, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, op() },
		backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(wait))
	return err
}

// addWait adds the one-shot commands' -wait flag.
func addWait(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("wait", 0, "keep trying to reach the database for up to this long (e.g. 30s) before failing")
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
