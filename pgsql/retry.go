package pgsql

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// IsConnError reports whether err is about reaching the database rather
// than about the statement: the server is down, restarting, refusing
// connections or credentials, or ended the session. Such errors are
// nobody's fault in pointsd and pass when the database is back; any other
// error the server reports (a missing privilege, a failed check) does not.
// A database out of disk or memory answers: OutOfResources names those.
func IsConnError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrNoState) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true // whatever the cause, authentication included
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		c := pgErr.Code
		// 08: connection exception; 57P01-03: the server is shutting down
		// or starting.
		return pgerrcode.IsConnectionException(c) || c == pgerrcode.TooManyConnections ||
			c == pgerrcode.AdminShutdown || c == pgerrcode.CrashShutdown || c == pgerrcode.CannotConnectNow
	}
	// Not reported by the server: the transport failed (reset, refused,
	// EOF, a timeout, a connection or pool already closed).
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		pgconn.Timeout(err) || strings.Contains(err.Error(), "conn closed") ||
		errors.Is(err, puddle.ErrClosedPool) // shutting down
}

// RetryRead runs read, and once more if it failed on the connection: a
// pooled connection may have been ended server-side (a restart, an
// administrator's pg_terminate_backend) while it sat idle, and a read-only
// statement is always safe to repeat. Before the retry, reset drops the
// pool's other connections, which died with it as a rule.
func RetryRead[T any](ctx context.Context, reset func(), read func(context.Context) (T, error)) (T, error) {
	v, err := read(ctx)
	if err == nil || ctx.Err() != nil || !IsConnError(err) {
		return v, err
	}
	if reset != nil {
		reset()
	}
	return read(ctx)
}
