package pgsql_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// The SQLSTATE classes pointsd acts on are told apart from the server's
// own errors and through wrapping.
func TestSQLState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	_, undefined := pool.Exec(ctx, `SELECT FROM no_such_table`)
	_, readOnly := pool.Exec(ctx, `BEGIN READ ONLY; UPDATE cycle_state SET floor = 0; COMMIT`)
	for _, c := range []struct {
		name                     string
		err                      error
		lock, schema, isReadOnly bool
	}{
		{"undefined table", undefined, false, true, false},
		{"permission denied", fmt.Errorf("draw: %w", &pgconn.PgError{Code: "42501"}), false, true, false},
		{"read-only transaction", readOnly, false, false, true},
		{"lock timeout", fmt.Errorf("bucket 3: %w", &pgconn.PgError{Code: "55P03"}), true, false, false},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, false, false, false},
		{"not from the server", errors.New("42"), false, false, false},
		{"nil", nil, false, false, false},
	} {
		if got := pgsql.LockBusy(c.err); got != c.lock {
			t.Errorf("%s (%v): LockBusy = %v, want %v", c.name, c.err, got, c.lock)
		}
		if got := pgsql.SchemaMismatch(c.err); got != c.schema {
			t.Errorf("%s (%v): SchemaMismatch = %v, want %v", c.name, c.err, got, c.schema)
		}
		if got := pgsql.ReadOnly(c.err); got != c.isReadOnly {
			t.Errorf("%s (%v): ReadOnly = %v, want %v", c.name, c.err, got, c.isReadOnly)
		}
	}
}

// A closed pgx pool fails every use with puddle's ErrClosedPool, which
// IsConnError then names without matching the message.
func TestClosedPoolIsPuddles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	pool.Close()
	_, execErr := pool.Exec(ctx, `SELECT 1`)
	_, queryErr := pool.Query(ctx, `SELECT 1`)
	var one int
	rowErr := pool.QueryRow(ctx, `SELECT 1`).Scan(&one)
	_, beginErr := pool.Begin(ctx)
	funcErr := pgx.BeginFunc(ctx, pool, func(pgx.Tx) error { return nil })
	_, acquireErr := pool.Acquire(ctx)
	for name, err := range map[string]error{"Exec": execErr, "Query": queryErr, "QueryRow": rowErr,
		"Begin": beginErr, "BeginFunc": funcErr, "Acquire": acquireErr} {
		if !errors.Is(err, puddle.ErrClosedPool) {
			t.Errorf("%s on a closed pool: %v, not puddle.ErrClosedPool", name, err)
		}
		if !pgsql.IsConnError(fmt.Errorf("read: %w", err)) {
			t.Errorf("%s on a closed pool: IsConnError(%v) = false", name, err)
		}
	}
}
