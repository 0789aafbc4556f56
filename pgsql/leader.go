package pgsql

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// lockHolderPID is the server process id of the session holding the leader
// lock, NULL when nobody leads; param is the placeholder of leaderLockID.
func lockHolderPID(param string) string {
	return `(SELECT max(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND classid = (` + param + `::bigint >> 32)::oid AND objid = (` + param + `::bigint & 4294967295)::oid
		  AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`
}

// LeaderPID returns the server process id of the session holding the leader
// lock, or 0 when nobody leads.
func LeaderPID(ctx context.Context, db DBTX) (int, error) {
	var pid int
	err := db.QueryRow(ctx, `SELECT coalesce(`+lockHolderPID("$1")+`, 0)`, int64(leaderLockID)).Scan(&pid)
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

// ErrDeposed is returned by a fenced write when another leader has taken a
// later term: this one was evicted (paused, or cut off) and must stop.
var ErrDeposed = errors.New("deposed: another replica leads under a later term")

// Session names. Every session of a replica is named after its instance,
// so that a follower evicting a stale leader can end exactly its sessions.
const (
	LeaderSession  = "pointsd-leader"  // the leader lock's own connection
	UpdaterSession = "pointsd-updater" // the updater's pool: cycles and buckets
	ListenSession  = "pointsd-listen"  // LISTEN for the answer caches
	QuerySession   = "pointsd"         // the query pool
)

// SessionName is the application_name of instance's session of kind.
func SessionName(kind, instance string) string {
	if instance == "" {
		return kind
	}
	return kind + "/" + instance
}

// TakeTerm starts a new leadership term for holder, which must hold the
// leader lock. It ends the sessions of the previous holder's updater
// first, waiting up to 2 s for each to be gone: a transaction it left open
// (its host cut off, its process paused) would otherwise keep its row
// locks until TCP gives up, minutes later. Then it raises the term, which
// waits for any write still inside the old term's fence. It returns the
// new term and the sessions it ended.
func TakeTerm(ctx context.Context, db DBTX, holder string) (term int64, ended int, err error) {
	err = db.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid, 2000))::int
		FROM pg_stat_activity a, leader_lease l
		WHERE l.holder NOT IN ('', $1)
		  AND a.application_name IN ($2 || '/' || l.holder, $3 || '/' || l.holder)`,
		holder, LeaderSession, UpdaterSession).Scan(&ended)
	if err != nil {
		return 0, 0, fmt.Errorf("end the previous leader's sessions: %w", err)
	}
	// prev takes the row FOR UPDATE, which waits on the fence's share
	// locks: the upsert's own lock (FOR NO KEY UPDATE) would not.
	err = db.QueryRow(ctx, `
		WITH prev AS MATERIALIZED (SELECT FROM leader_lease FOR UPDATE)
		INSERT INTO leader_lease AS l (term, holder, renewed_at)
		SELECT 1, $1, now() FROM (SELECT count(*) FROM prev) AS locked
		ON CONFLICT (singleton) DO UPDATE SET term = l.term + 1, holder = $1, renewed_at = now()
		RETURNING term`, holder).Scan(&term)
	if err != nil {
		return 0, 0, fmt.Errorf("take a leader term: %w", err)
	}
	return term, ended, nil
}

// RenewLease proves that term's leader is alive, on the database's clock.
// It reports false when the term is no longer the current one.
func RenewLease(ctx context.Context, db DBTX, term int64) (bool, error) {
	tag, err := db.Exec(ctx, `UPDATE leader_lease SET renewed_at = now() WHERE term = $1`, term)
	if err != nil {
		return false, fmt.Errorf("renew the leader lease: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Lease is the leader lease as a follower sees it.
type Lease struct {
	Term   int64  `db:"term"`
	Holder string `db:"holder"`
	// Age is how long ago it was renewed, on the database's clock.
	Age time.Duration `db:"age"`
	// LockHolder is the application_name of the session holding the
	// leader lock, "" when nobody holds it.
	LockHolder string `db:"lock_holder"`
}

// ReadLease returns the leader lease and who holds the leader lock.
func ReadLease(ctx context.Context, db DBTX) (Lease, error) {
	rows, err := db.Query(ctx, `
		SELECT l.term, l.holder, now() - l.renewed_at AS age,
		       coalesce((SELECT a.application_name FROM pg_stat_activity a WHERE a.pid = `+lockHolderPID("$1")+`), '') AS lock_holder
		FROM leader_lease l`, int64(leaderLockID))
	if err != nil {
		return Lease{}, fmt.Errorf("read the leader lease: %w", err)
	}
	l, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Lease])
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, nil // migrated away or deleted: the next leader's TakeTerm restores it
	}
	if err != nil {
		return Lease{}, fmt.Errorf("read the leader lease: %w", err)
	}
	return l, nil
}

// EvictLeader ends the sessions of a leader that holds the lock but has not
// renewed its lease for longer than stale: a paused process, or a host cut
// off without a reset, whose sessions the server would keep for minutes.
// It acts only when the lock's session is the lease holder's (never on a
// leader that does not renew leases, such as an older pointsd mid upgrade)
// and the lease is still term's. It returns the sessions it ended, waiting
// up to 2 s for each to be gone.
func EvictLeader(ctx context.Context, db DBTX, term int64, stale time.Duration) (int, error) {
	var ended int
	err := db.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid, 2000))::int
		FROM leader_lease l JOIN pg_stat_activity a
		  ON a.application_name IN ($3 || '/' || l.holder, $4 || '/' || l.holder)
		WHERE l.term = $1 AND l.holder <> '' AND now() - l.renewed_at > $2
		  AND (SELECT application_name FROM pg_stat_activity WHERE pid = `+lockHolderPID("$5")+`) = $3 || '/' || l.holder`,
		term, stale, LeaderSession, UpdaterSession, int64(leaderLockID)).Scan(&ended)
	if err != nil {
		return 0, fmt.Errorf("evict the stale leader: %w", err)
	}
	return ended, nil
}

// Pooled reports whether conn goes through a connection pooler: a pooler
// gives its clients a process id of its own, never the server's.
func Pooled(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var pid uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return false, fmt.Errorf("check for a pooler: %w", err)
	}
	return pid != conn.PgConn().PID(), nil
}

// PoolerProblem is what a replica whose direct connection goes through a
// connection pooler says, in its status and its log.
const PoolerProblem = "the direct connection goes through a connection pooler (such as PgBouncer): " +
	"set POINTSD_DIRECT_URL to PostgreSQL itself (or a session-mode pool) for the leader lock, LISTEN and migrations"

// PoolerRefusal reports whether a connection failed because a pooler
// refused it: PgBouncer refuses the session settings a direct connection
// sends at startup.
func PoolerRefusal(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgerrcode.ProtocolViolation && strings.Contains(pgErr.Message, "unsupported startup parameter")
}
