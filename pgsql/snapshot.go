package pgsql

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/partition"
)

// OldSnapshotAfter is how old a snapshot may grow before CheckState names
// it. HOT pruning cannot remove a row version a snapshot may still see, so
// under an old snapshot every cycle adds a version of every user instead
// of reusing the space of the last one: with fillfactor 45 the first fits
// in its page, each later one grows users by up to its own size. pointsd's
// own transactions stay well under a minute: a bucket takes ~10–100 ms, a
// strict cycle 1–4 s at 1M users and 30 s at 10M.
const OldSnapshotAfter = time.Minute

// What can hold a snapshot back, as Snapshot.Holder.
const (
	HolderSession  = "session"
	HolderPrepared = "prepared transaction"
	HolderSlot     = "replication slot"
)

// Snapshot is one thing holding back the xmin horizon of pointsd's
// database: tuple versions newer than what it may still see cannot be
// pruned or vacuumed away.
type Snapshot struct {
	Holder string // HolderSession, HolderPrepared or HolderSlot
	// Name is the session's application_name, the prepared transaction's
	// gid or the slot's name.
	Name string
	PID  int // the session's; 0 for the others
	// User, Client and State are the session's role, client address and
	// state (active, idle in transaction, …); a prepared transaction's
	// owner; "inactive" for a slot.
	User, Client, State string
	// Since is when the session's transaction started (its snapshot is
	// no older) or the transaction was prepared; zero for a slot, of which
	// PostgreSQL keeps no time.
	Since time.Time
	// Age is how long ago Since was, by the database's clock.
	Age time.Duration
	// Transactions is how many transactions the horizon it holds is behind.
	Transactions int64
}

// Horizon is what holds back pointsd's database's xmin horizon, and what
// that has cost the users table so far.
type Horizon struct {
	// Oldest is the session or prepared transaction with the oldest
	// snapshot; nil when none holds one.
	Oldest *Snapshot
	// Slots are the inactive replication slots holding an xmin: nobody
	// advances them, so they hold the horizon back for good.
	Slots []Snapshot
	// TableBytes is the size of users now, every partition with its
	// indexes; ExpectedBytes what its users take when pruning works.
	TableBytes, ExpectedBytes int64
	Users                     int64 // by the highest id: seed numbers users 1..n
}

// horizonSQL lists the holders: the session or prepared transaction with
// the oldest transaction in this database, then the inactive slots. A
// session in another database does not hold back this one's tables
// (PostgreSQL 14 and later); a slot's xmin holds back every database's.
// Other roles' sessions show their start only to a role with
// pg_read_all_stats: without it they are left out.
const horizonSQL = `
	WITH sizes AS (
		SELECT coalesce((SELECT sum(pg_total_relation_size(relid))
		                 FROM pg_partition_tree('users'::regclass) WHERE isleaf), 0)::bigint AS table_bytes,
		       coalesce((SELECT max(id) FROM users), 0)::bigint AS users
	), holders AS (
		(SELECT 1 AS rank, holder, name, pid, usr, client, state, since, xacts FROM (
			SELECT $1::text AS holder, a.application_name AS name, a.pid,
			       coalesce(a.usename::text, '') AS usr, coalesce(host(a.client_addr), '') AS client,
			       coalesce(a.state, '') AS state, a.xact_start AS since,
			       greatest(age(a.backend_xid), age(a.backend_xmin))::bigint AS xacts
			FROM pg_stat_activity a
			WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
			  AND (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL) AND a.xact_start IS NOT NULL
			UNION ALL
			SELECT $2::text, p.gid, 0, p.owner::text, '', 'prepared', p.prepared, age(p.transaction)::bigint
			FROM pg_prepared_xacts p
			WHERE p.database = current_database()
		) timed ORDER BY since LIMIT 1)
		UNION ALL
		SELECT 2, $3::text, s.slot_name::text, 0, '', '', 'inactive', NULL, age(s.xmin)::bigint
		FROM pg_replication_slots s
		WHERE s.xmin IS NOT NULL AND NOT s.active
	)
	SELECT s.table_bytes, s.users, h.holder, h.name, h.pid, h.usr, h.client, h.state, h.since,
	       extract(epoch FROM now() - h.since)::float8, h.xacts
	FROM sizes s LEFT JOIN holders h ON true
	ORDER BY h.rank, h.name`

// ReadHorizon finds what holds back the xmin horizon, in one round trip
// over pg_stat_activity, pg_prepared_xacts, pg_replication_slots and the
// partitions' sizes.
func ReadHorizon(ctx context.Context, db DBTX) (Horizon, error) {
	var h Horizon
	rows, err := db.Query(ctx, horizonSQL, HolderSession, HolderPrepared, HolderSlot)
	if err != nil {
		return h, fmt.Errorf("read the xmin horizon: %w", err)
	}
	type row struct {
		TableBytes, Users   int64
		Holder, Name        *string
		PID                 *int
		User, Client, State *string
		Since               *time.Time
		AgeSeconds          *float64
		Transactions        *int64
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return h, fmt.Errorf("read the xmin horizon: %w", err)
	}
	for _, r := range found {
		h.TableBytes, h.Users = r.TableBytes, r.Users
		if r.Holder == nil {
			continue // no holder: the sizes alone
		}
		s := Snapshot{Holder: *r.Holder, Name: *r.Name, PID: *r.PID, User: *r.User, Client: *r.Client,
			State: *r.State, Transactions: *r.Transactions}
		if r.Since != nil {
			s.Since = *r.Since
			s.Age = time.Duration(*r.AgeSeconds * float64(time.Second))
		}
		if s.Holder == HolderSlot {
			h.Slots = append(h.Slots, s)
		} else {
			h.Oldest = &s
		}
	}
	h.ExpectedBytes = int64(math.Round(float64(h.Users) * partition.MeasuredCosts.Bytes))
	return h, nil
}

// OldestAge is the age of the oldest snapshot a session or prepared
// transaction holds, 0 if none does.
func (h Horizon) OldestAge() time.Duration {
	if h.Oldest == nil {
		return 0
	}
	return h.Oldest.Age
}

// Problems names what holds the horizon back for longer than after: the
// oldest snapshot, if older, and every inactive slot.
func (h Horizon) Problems(after time.Duration) []Problem {
	var out []Problem
	if h.Oldest != nil && h.Oldest.Age > after {
		out = append(out, Problem{CheckOldSnapshot, h.describe(*h.Oldest)})
	}
	for _, s := range h.Slots {
		out = append(out, Problem{CheckOldSnapshot, h.describe(s)})
	}
	return out
}

// describe names s and says what it costs and how to end it.
func (h Horizon) describe(s Snapshot) string {
	var who, end string
	switch s.Holder {
	case HolderSession:
		who = fmt.Sprintf("session pid %d (application %q, user %q, client %q, %s) has held a snapshot since %s (%s)",
			s.PID, s.Name, s.User, s.Client, s.State, s.Since.UTC().Format(time.RFC3339), s.Age.Round(time.Second))
		end = fmt.Sprintf("end its transaction, or SELECT pg_terminate_backend(%d)", s.PID)
	case HolderPrepared:
		who = fmt.Sprintf("prepared transaction %q (owner %q) has held a snapshot since %s (%s)",
			s.Name, s.User, s.Since.UTC().Format(time.RFC3339), s.Age.Round(time.Second))
		end = fmt.Sprintf("COMMIT PREPARED or ROLLBACK PREPARED %s", quoteLiteral(s.Name))
	default:
		who = fmt.Sprintf("replication slot %q is inactive and holds the xmin horizon %d transactions back", s.Name, s.Transactions)
		end = fmt.Sprintf("reconnect its standby, or SELECT pg_drop_replication_slot(%s)", quoteLiteral(s.Name))
	}
	return fmt.Sprintf("%s, so HOT pruning stops and users grows with every cycle: it is %s, about %s expected for %d users; %s",
		who, mib(h.TableBytes), mib(h.ExpectedBytes), h.Users, end)
}

// mib formats bytes in MiB for an operator.
func mib(bytes int64) string {
	return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20))
}

// quoteLiteral quotes s as an SQL string literal, for a statement an
// operator copies from a message.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
