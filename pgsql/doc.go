// Package pgsql owns pointsd's schema and every SQL
// statement it runs: the embedded, versioned migrations and one function per
// statement, each taking a DBTX so the caller decides the transaction. It is
// not named sql so that it sits beside database/sql without an alias.
//
// It reads and writes the domain types of package pointsd (State, Cycle,
// Answer, Mode) and keeps only storage's own: buckets, leases, damage
// checks, sessions.
//
// Nothing outside this package builds SQL. Identifiers that vary (partition
// names) are quoted with pgx.Identifier, never formatted from input.
package pgsql

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what the statements need: a pool, a connection or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
