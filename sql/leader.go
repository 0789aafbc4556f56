package sql

import (
	"context"
	"fmt"
)

// leaderLockID is the session advisory lock whose holder is the leader.
const leaderLockID = 7_310_449_110_002

// TryLeaderLock takes the leader lock for db's session if it is free. db
// must be a dedicated connection: the lock lives as long as the session.
func TryLeaderLock(ctx context.Context, db DBTX) (bool, error) {
	var ok bool
	if err := db.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(leaderLockID)).Scan(&ok); err != nil {
		return false, fmt.Errorf("try leader lock: %w", err)
	}
	return ok, nil
}

// LeaderPID returns the server process id of the session holding the leader
// lock, or 0 when nobody leads.
func LeaderPID(ctx context.Context, db DBTX) (int, error) {
	var pid int
	err := db.QueryRow(ctx, `
		SELECT coalesce(max(pid), 0) FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
		  AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		int64(leaderLockID)).Scan(&pid)
	if err != nil {
		return 0, fmt.Errorf("find leader: %w", err)
	}
	return pid, nil
}
