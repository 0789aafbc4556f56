package pgsql

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd"
)

// scheduleColumns selects a pointsd.Schedule from cycle_state s: the
// milliseconds of period_ms and spread_ms become Durations here, once.
const scheduleColumns = `s.cycle, s.floor, coalesce(s.period_ms, 0) * interval '1 millisecond' AS period,
	coalesce(s.spread_ms, s.period_ms, 0) * interval '1 millisecond' AS spread, s.started_at, s.next_start`

// ReadState returns the current cycle's state.
func ReadState(ctx context.Context, db DBTX) (pointsd.State, error) {
	rows, err := db.Query(ctx, `
		SELECT `+scheduleColumns+`, s.seed, s.mode, s.finished_at, s.last_duration, s.last_bucket_max,
		       (SELECT count(*) FROM buckets b WHERE b.cycle >= s.cycle)::int AS buckets_done,
		       (SELECT count(*) FROM buckets)::int AS buckets_total,
		       (SELECT coalesce(max(cycle), 0) FROM buckets) AS max_bucket_cycle,
		       s.cluster_mode
		FROM cycle_state s`)
	if err != nil {
		return pointsd.State{}, fmt.Errorf("read cycle state: %w", err)
	}
	st, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[pointsd.State])
	if errors.Is(err, pgx.ErrNoRows) {
		return pointsd.State{}, ErrNoState
	}
	if err != nil {
		return pointsd.State{}, fmt.Errorf("read cycle state: %w", err)
	}
	return st, nil
}

// ChangesChannel is the NOTIFY channel on which every transaction that
// changes points or the floor announces itself, at its commit, to the
// replicas caching answers. The payload is the bucket rewritten, or
// AllBuckets when a cycle started.
const ChangesChannel = "pointsd_changes"

// AllBuckets is the notification payload of a started cycle: the floor
// changed (and, in strict mode, every bucket).
const AllBuckets = -1

// StartCycle publishes c's floor and seed, if c is numbered after the
// current cycle (cycle numbers only grow). It reports false when another
// leader got there first: a cycle starts exactly once whatever happens to
// leadership.
func StartCycle(ctx context.Context, db DBTX, c pointsd.Cycle) (bool, error) {
	var period, spread *int64
	var next *time.Time // a paced cycle's next starts a period later
	if c.Period > 0 {
		ms := c.Period.Milliseconds()
		period = &ms
		t := c.StartedAt.Add(c.Period)
		next = &t
		if c.Spread > 0 && c.Spread < c.Period {
			ms := c.Spread.Milliseconds()
			spread = &ms
		}
	}
	// One statement, so the notification is sent exactly when the floor
	// commits.
	tag, err := db.Exec(ctx, `
		WITH started AS (
			UPDATE cycle_state
			SET cycle = $1, floor = $2, seed = $3, mode = $4, period_ms = $5, started_at = $6, finished_at = NULL,
			    next_start = $9, spread_ms = $10
			WHERE cycle < $1 AND `+fence("$11")+`
			RETURNING cycle
		)
		SELECT pg_notify($7, $8) FROM started`,
		c.Cycle, c.Floor, c.Seed, c.Mode, period, c.StartedAt, ChangesChannel, strconv.Itoa(AllBuckets), next, spread, c.Term)
	if err != nil {
		return false, fmt.Errorf("start cycle %d: %w", c.Cycle, err)
	}
	if tag.RowsAffected() == 0 {
		return false, checkTerm(ctx, db, c.Term)
	}
	return true, nil
}

// FinishCycle records that cycle ended, how long it took and, for a
// rolling cycle, its slowest bucket (bucketMax; 0 for a strict cycle keeps
// the last rolling cycle's).
func FinishCycle(ctx context.Context, db DBTX, cycle, term int64, took, bucketMax time.Duration) error {
	var slowest *float64
	if bucketMax > 0 {
		s := bucketMax.Seconds()
		slowest = &s
	}
	tag, err := db.Exec(ctx, `
		UPDATE cycle_state SET finished_at = now(), last_duration = $2, last_bucket_max = coalesce($3, last_bucket_max)
		WHERE cycle = $1 AND `+fence("$4"), cycle, took.Seconds(), slowest, term)
	if err != nil {
		return fmt.Errorf("finish cycle %d: %w", cycle, err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	if err := checkTerm(ctx, db, term); err != nil {
		return err
	}
	// The row deleted by hand while the cycle ran: its later buckets were
	// not claimed (a claim needs the row), so the cycle must not pass for
	// done.
	var exists bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM cycle_state)`).Scan(&exists); err != nil {
		return fmt.Errorf("finish cycle %d: %w", cycle, err)
	}
	if !exists {
		return fmt.Errorf("finish cycle %d: %w", cycle, ErrNoState)
	}
	return nil
}

// Bucket is one rolling bucket: its index (the slot order) and partition.
type Bucket struct {
	Index int
	// Partition is the bucket's table, nil when it is no longer a
	// partition of users (dropped or detached by hand: see CheckState).
	Partition pgx.Identifier
	Cycle     int64 // the last cycle that rewrote it
	// Local is whether the partition is a plain table of this server (not
	// distributed by Citus): its rewrite then checks every row against
	// the partition's bound, which locks the parent, users, too.
	Local bool
}

// Buckets lists every bucket in slot order, those whose partition is gone
// included: slots are cut by the number of buckets, and a missing one must
// not shift the others.
func Buckets(ctx context.Context, db DBTX) ([]Bucket, error) {
	rows, err := db.Query(ctx, `
		SELECT b.bucket, n.nspname, c.relname, b.cycle,
		       NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') AS local
		FROM buckets b
		LEFT JOIN pg_inherits i ON i.inhrelid = b.partition AND i.inhparent = 'users'::regclass
		LEFT JOIN pg_class c ON c.oid = i.inhrelid
		LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
		ORDER BY b.bucket`)
	if err != nil {
		return nil, fmt.Errorf("list buckets: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Bucket, error) {
		var b Bucket
		var schema, table *string
		err := row.Scan(&b.Index, &schema, &table, &b.Cycle, &b.Local)
		if table != nil {
			b.Partition = pgx.Identifier{*schema, *table}
		}
		return b, err
	})
}

// DrawBucket re-draws bucket b's users for cycle c, inside tx. The bucket
// is claimed first: if some transaction already rewrote it for this cycle
// (another leader, or a retry after a lost commit acknowledgement),
// nothing is done and claimed is false. A bucket is therefore rewritten
// exactly once per cycle, and wholly or not at all. The claim holds only
// while c is the current cycle and c.Term the current term: an evicted
// leader that wakes up gets ErrDeposed and writes nothing.
func DrawBucket(ctx context.Context, tx pgx.Tx, b Bucket, c pointsd.Cycle) (rows int64, claimed bool, err error) {
	tag, err := tx.Exec(ctx, `
		UPDATE buckets SET cycle = $1, seed = $3, updated_at = now()
		WHERE bucket = $2 AND cycle < $1 AND $1 = (SELECT cycle FROM cycle_state) AND `+fence("$4"),
		c.Cycle, b.Index, c.Seed, c.Term)
	if err != nil {
		return 0, false, fmt.Errorf("claim bucket %d: %w", b.Index, err)
	}
	if tag.RowsAffected() == 0 {
		return 0, false, checkTerm(ctx, tx, c.Term)
	}
	// The parent first: the rewrite locks the partition, then the parent
	// (for the partition's bound). Behind a queued ALTER TABLE users,
	// which locks the parent, then every partition, that order is a
	// deadlock each bucket would hold until its lock_timeout, one
	// partition after another. Waiting on the parent alone holds nothing.
	if b.Local {
		if _, err = tx.Exec(ctx, `LOCK TABLE ONLY users IN ACCESS SHARE MODE`); err != nil {
			return 0, false, fmt.Errorf("lock users for bucket %d: %w", b.Index, err)
		}
	}
	if rows, err = UpdatePartition(ctx, tx, b.Partition, c.Seed); err != nil {
		return 0, false, err
	}
	// Checked again at the end: the term may have changed while the
	// partition was rewritten (the new leader also ends this session).
	if err = checkTerm(ctx, tx, c.Term); err != nil {
		return 0, false, err
	}
	if _, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, ChangesChannel, strconv.Itoa(b.Index)); err != nil {
		return 0, false, fmt.Errorf("notify: %w", err)
	}
	return rows, true, nil
}

// DrawAll is the strict cycle, inside tx: it starts c and re-draws every
// user, so that a reader sees either the old floor and points or the new
// ones. started is false when another leader started c first.
func DrawAll(ctx context.Context, tx pgx.Tx, c pointsd.Cycle) (rows int64, started bool, err error) {
	if started, err = StartCycle(ctx, tx, c); err != nil || !started {
		return 0, started, err
	}
	if rows, err = UpdateAll(ctx, tx, c.Seed); err != nil {
		return 0, false, err
	}
	if _, err = tx.Exec(ctx, `UPDATE buckets SET cycle = $1, seed = $2, updated_at = now()`, c.Cycle, c.Seed); err != nil {
		return 0, false, fmt.Errorf("mark buckets: %w", err)
	}
	if err = checkTerm(ctx, tx, c.Term); err != nil {
		return 0, false, err
	}
	return rows, true, nil
}

// fence is the condition under which a write of term's leader may happen:
// term is still the current leadership term (0: unfenced, a cycle run by
// hand). param is term's placeholder.
//
// It share-locks the lease row (FOR KEY SHARE) until the transaction ends.
// TakeTerm locks that row FOR UPDATE, so a new term waits for every write
// that passed the fence under the old one: a commit of the old leader
// lands before the new term exists, never after. The lease renewal, an
// UPDATE of a non-key column, does not wait on it.
func fence(param string) string {
	return `(` + param + `::bigint = 0 OR EXISTS (SELECT FROM leader_lease WHERE term = ` + param + ` FOR KEY SHARE))`
}

// checkTerm returns ErrDeposed when term (not 0) is no longer the current
// leadership term. Inside a transaction it holds the fence's lock.
func checkTerm(ctx context.Context, db DBTX, term int64) error {
	if term == 0 {
		return nil
	}
	var current bool
	if err := db.QueryRow(ctx, `SELECT `+fence("$1"), term).Scan(&current); err != nil {
		return fmt.Errorf("check the leader term: %w", err)
	}
	if !current {
		return ErrDeposed
	}
	return nil
}
