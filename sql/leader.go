package pgsql

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

// CanLead reports why db's role cannot do the leader's work ("" when it
// can): a replica that may only read would otherwise take the leader lock,
// fail every cycle and keep the lock from a replica that could run them.
// It checks the server (a standby, or read-only by default) and the
// privileges every cycle uses: UPDATE on the state, the buckets and each
// partition, which rolling cycles address directly.
func CanLead(ctx context.Context, db DBTX) (string, error) {
	var why string
	err := db.QueryRow(ctx, `
		SELECT CASE
			WHEN pg_is_in_recovery() THEN 'the database is a read-only standby'
			WHEN current_setting('default_transaction_read_only')::bool THEN 'default_transaction_read_only is on for this role or database'
			WHEN NOT has_table_privilege('cycle_state', 'UPDATE') OR NOT has_table_privilege('buckets', 'UPDATE')
				THEN 'role ' || current_user || ' may not UPDATE cycle_state and buckets'
			WHEN EXISTS (SELECT FROM buckets b JOIN pg_class c ON c.oid = b.partition
			             WHERE NOT has_table_privilege(b.partition, 'UPDATE'))
				THEN 'role ' || current_user || ' may not UPDATE every users partition'
			ELSE '' END`).Scan(&why)
	if err != nil {
		return "", fmt.Errorf("check leader privileges: %w", err)
	}
	return why, nil
}
