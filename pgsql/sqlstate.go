package pgsql

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// This file is what pointsd makes of the SQLSTATE codes the server
// reports, in one place: the updater and the HTTP API ask these instead of
// reading codes themselves. IsConnError and OutOfResources are in
// retry.go and resources.go.

// sqlState is err's SQLSTATE, "" when the server did not report one.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// LockBusy reports whether err is a lock wait that ran out (lock_timeout):
// another session holds the lock.
func LockBusy(err error) bool { return sqlState(err) == pgerrcode.LockNotAvailable }

// SchemaMismatch reports whether err says the schema is not what the
// statement expects, or the role may not use it: class 42 (an undefined
// table or column, a missing privilege). Migrating or granting fixes it;
// retrying does not.
func SchemaMismatch(err error) bool {
	return pgerrcode.IsSyntaxErrororAccessRuleViolation(sqlState(err))
}

// ReadOnly reports whether err is a write refused by a read-only
// transaction (a standby, or default_transaction_read_only).
func ReadOnly(err error) bool { return sqlState(err) == pgerrcode.ReadOnlySQLTransaction }
