package pgsql_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// Errors about reaching the database are told from errors of pointsd's own
// (a statement the server refused, a cycle another leader started, a
// missing row): only the first pass by themselves, and are retried.
func TestIsConnError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{})
	pool := pgtest.Pool(t, url)
	_, refused := pgx.Connect(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	// The server answers, and refuses the role: a ConnectError around 28000.
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = "nobody_at_all"
	_, noRole := pgx.ConnectConfig(ctx, cfg)
	_, syntax := pool.Exec(ctx, `SELEC 1`)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, conn.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	_, terminated := conn.Exec(ctx, `SELECT 1`)
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"role refused", noRole, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"disk full", &pgconn.PgError{Code: "53100"}, false},
		{"out of shared memory", &pgconn.PgError{Code: "53200"}, false},
		{"administrator shutdown", fmt.Errorf("read: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"permission denied", &pgconn.PgError{Code: "42501"}, false},
		{"session terminated", terminated, true},
		{"deadline", context.DeadlineExceeded, true},
		{"syntax error", syntax, false},
		{"missing state row", pgsql.ErrNoState, false},
		{"another leader started the cycle", fmt.Errorf("rolling cycle 3: %w", updater.ErrNotStarted), false},
		{"canceled", context.Canceled, false},
		{"nil", nil, false},
	} {
		if got := pgsql.IsConnError(c.err); got != c.want {
			t.Errorf("%s (%v): IsConnError = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// Class 53 errors but too many connections are named for what the database
// ran out of, from the server's own error and through wrapping.
func TestOutOfResources(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	_, raised := pool.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full'; END $$`)
	for _, c := range []struct {
		name       string
		err        error
		kind, line string
	}{
		{"disk full raised by the server", fmt.Errorf("bucket 1: %w", raised), pgsql.OutOfDisk, "database out of disk space (SQLSTATE 53100)"},
		{"out of shared memory", &pgconn.PgError{Code: "53200"}, pgsql.OutOfMemory, "database out of memory (SQLSTATE 53200)"},
		{"configuration limit", &pgconn.PgError{Code: "53400"}, pgsql.OutOfConfiguredLimit, "database past a configured limit (SQLSTATE 53400)"},
		{"insufficient resources", &pgconn.PgError{Code: "53000"}, pgsql.OutOfResourcesOther, "database out of resources (SQLSTATE 53000)"},
		{"too many connections", &pgconn.PgError{Code: "53300"}, "", ""},
		{"unique violation", &pgconn.PgError{Code: "23505"}, "", ""},
		{"nil", nil, "", ""},
	} {
		if kind, line := pgsql.OutOfResources(c.err), pgsql.DescribeOutOfResources(c.err); kind != c.kind || line != c.line {
			t.Errorf("%s (%v): %q, %q; want %q, %q", c.name, c.err, kind, line, c.kind, c.line)
		}
	}
}
