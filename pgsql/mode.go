package pgsql

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd"
)

// SetClusterMode sets the mode the cluster's next cycles run in, and
// returns the number of the first cycle it applies to: the next to start.
// A cycle in flight keeps its mode.
func SetClusterMode(ctx context.Context, db DBTX, mode pointsd.Mode) (from int64, err error) {
	err = db.QueryRow(ctx, `
		UPDATE cycle_state SET cluster_mode = $1
		RETURNING greatest(cycle, (SELECT coalesce(max(cycle), 0) FROM buckets)) + 1`, mode).Scan(&from)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNoState
	}
	if err != nil {
		return 0, fmt.Errorf("set cluster mode: %w", err)
	}
	return from, nil
}

// ClusterMode returns the cluster's mode, "" when the state row is missing.
// It is cheap enough for every replica to ask at every leader poll.
func ClusterMode(ctx context.Context, db DBTX) (pointsd.Mode, error) {
	var mode *pointsd.Mode
	if err := db.QueryRow(ctx, `SELECT (SELECT cluster_mode FROM cycle_state)`).Scan(&mode); err != nil {
		return "", fmt.Errorf("read cluster mode: %w", err)
	}
	if mode == nil {
		return "", nil
	}
	return *mode, nil
}

// PublishNextStart publishes when the next cycle after cycle will start,
// so that replicas can reuse answers until then, and returns the time that
// stands: never earlier than one already published, on which replicas may
// rely (another leader's, meanwhile). If another cycle has started, it
// changes nothing and returns next; if term is no longer current,
// ErrDeposed.
func PublishNextStart(ctx context.Context, db DBTX, cycle, term int64, next time.Time) (time.Time, error) {
	var at time.Time
	err := db.QueryRow(ctx, `
		UPDATE cycle_state SET next_start = greatest(coalesce(next_start, $2), $2)
		WHERE cycle = $1 AND `+fence("$3")+`
		RETURNING next_start`, cycle, next, term).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return next, checkTerm(ctx, db, term)
	}
	if err != nil {
		return next, fmt.Errorf("publish next start: %w", err)
	}
	return at, nil
}
