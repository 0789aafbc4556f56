package pgsql

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// What the database ran out of, by the SQLSTATE of class 53 it reported
// (too_many_connections aside: see IsConnError). They are a closed set, so
// each can label a metric.
const (
	// OutOfDisk: 53100 disk_full, a write found no space for WAL or data.
	OutOfDisk = "disk_full"
	// OutOfMemory: 53200 out_of_memory, memory or shared memory (the lock
	// table: max_locks_per_transaction) ran out.
	OutOfMemory = "out_of_memory"
	// OutOfConfiguredLimit: 53400 configuration_limit_exceeded, a limit
	// set in postgresql.conf (temp_file_limit, for one) was reached.
	OutOfConfiguredLimit = "configuration_limit_exceeded"
	// OutOfResourcesOther: 53000 insufficient_resources and any other code
	// of class 53.
	OutOfResourcesOther = "insufficient_resources"
)

// AllOutOfResources lists what OutOfResources returns, in report order.
var AllOutOfResources = []string{OutOfDisk, OutOfMemory, OutOfConfiguredLimit, OutOfResourcesOther}

// outOfWhat says in words what each kind ran out of.
var outOfWhat = map[string]string{
	OutOfDisk:            "out of disk space",
	OutOfMemory:          "out of memory",
	OutOfConfiguredLimit: "past a configured limit",
	OutOfResourcesOther:  "out of resources",
}

// OutOfResources returns what the database ran out of when err is a class 53
// error other than too many connections (one of AllOutOfResources), and ""
// otherwise. Such an error is the server's, not the statement's or this
// replica's: every replica would meet it, so it is no reason for a leader
// to step down, and it passes only when an operator frees the resource.
func OutOfResources(err error) string {
	switch resourceCode(err) {
	case "":
		return ""
	case pgerrcode.DiskFull:
		return OutOfDisk
	case pgerrcode.OutOfMemory:
		return OutOfMemory
	case pgerrcode.ConfigurationLimitExceeded:
		return OutOfConfiguredLimit
	default:
		return OutOfResourcesOther
	}
}

// DescribeOutOfResources names what OutOfResources found in one line, as in
// "database out of disk space (SQLSTATE 53100)"; "" if it found nothing.
func DescribeOutOfResources(err error) string {
	kind := OutOfResources(err)
	if kind == "" {
		return ""
	}
	return fmt.Sprintf("database %s (SQLSTATE %s)", outOfWhat[kind], resourceCode(err))
}

// resourceCode is err's SQLSTATE if it is of class 53 and not too many
// connections, else "".
func resourceCode(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !pgerrcode.IsInsufficientResources(pgErr.Code) ||
		pgErr.Code == pgerrcode.TooManyConnections {
		return ""
	}
	return pgErr.Code
}
