package pgsql

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// QueryTimesChannel is the NOTIFY channel on which each replica publishes
// its latest query time, so that the others answer GET / with the
// cluster's previous query (see httpapi/querytime.go). The payload is the
// instance and the time in Unix microseconds: "<instance> <µs>".
const QueryTimesChannel = "pointsd_query_times"

// queryTimesKeep is how long the row of an instance that stopped
// publishing is kept: replicas restart under a new instance, and their old
// rows would otherwise pile up.
const queryTimesKeep = 24 * time.Hour

// PublishQueryTime records at as instance's latest query time (never moving
// it back) and NOTIFYs it on QueryTimesChannel, in one statement: one round
// trip, through a transaction pooler too. It returns the latest query time
// of the other instances (zero if none): a replica whose listener is down
// still learns the others' times with each publish.
func PublishQueryTime(ctx context.Context, db DBTX, instance string, at time.Time) (time.Time, error) {
	var latest *time.Time
	err := db.QueryRow(ctx, `
		WITH published AS (
			INSERT INTO query_times AS q (instance, at, published_at) VALUES ($1, $2, now())
			ON CONFLICT (instance) DO UPDATE SET at = greatest(q.at, excluded.at), published_at = excluded.published_at
			RETURNING at)
		SELECT (SELECT max(at) FROM query_times WHERE instance <> $1), pg_notify($3, $4) FROM published`,
		instance, at, QueryTimesChannel, instance+" "+strconv.FormatInt(at.UnixMicro(), 10)).Scan(&latest, nil)
	if err != nil {
		return time.Time{}, fmt.Errorf("publish the query time: %w", err)
	}
	return deref(latest), nil
}

// LatestQueryTime returns the latest query time any instance but except
// published, zero if none ever did (the cluster's first query is still to
// come).
func LatestQueryTime(ctx context.Context, db DBTX, except string) (time.Time, error) {
	var latest *time.Time
	if err := db.QueryRow(ctx, `SELECT max(at) FROM query_times WHERE instance <> $1`, except).Scan(&latest); err != nil {
		return time.Time{}, fmt.Errorf("read the cluster's latest query time: %w", err)
	}
	return deref(latest), nil
}

// PruneQueryTimes deletes the rows of instances that have not published
// for a day, but never the one holding the latest time. No replica writes
// those rows any more, so the delete waits for nobody's lock.
func PruneQueryTimes(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, `
		DELETE FROM query_times
		WHERE published_at < now() - $1 * interval '1 second'
		  AND at < (SELECT max(at) FROM query_times)`, queryTimesKeep.Seconds())
	return wrapErr("prune query times", err)
}

// MayNotWrite reports whether err says this session may not write: the
// role lacks the privilege (42501) or the server is read-only (25006).
func MayNotWrite(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42501" || pgErr.Code == "25006")
}

// ParseQueryTime reads a QueryTimesChannel payload.
func ParseQueryTime(payload string) (instance string, at time.Time, err error) {
	instance, us, ok := strings.Cut(payload, " ")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || n <= 0 {
		return "", time.Time{}, fmt.Errorf("query time payload %q: want \"<instance> <µs>\"", payload)
	}
	return instance, time.UnixMicro(n), nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
