package pgsql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/partition"
)

// Checks are the kinds of problem CheckState looks for: damage, states
// pointsd never gets into by itself, only by a hand on the database (a
// dropped table, a deleted or edited row); and an old snapshot, which
// harms no answer but bloats the table. They are a closed set, so each can
// label a metric.
const (
	// CheckStateRow: the cycle_state row is gone, so there is no floor to
	// query with and no cycle to continue.
	CheckStateRow = "cycle_state_row"
	// CheckPartitions: a bucket's partition is gone (or detached), and with
	// it the users it held.
	CheckPartitions = "partitions"
	// CheckCycleOrder: buckets claim a later cycle than cycle_state's, so
	// the next cycles would find every bucket already claimed and rewrite
	// nothing.
	CheckCycleOrder = "cycle_order"
	// CheckCitusWorkers: on Citus, a worker the coordinator cannot reach
	// holds shards of every bucket, so queries and cycles fail.
	CheckCitusWorkers = "citus_workers"
	// CheckOldSnapshot: a session, prepared transaction or replication
	// slot has held a snapshot for over OldSnapshotAfter, so HOT pruning
	// stops and users grows every cycle (see ReadHorizon); on Citus, a
	// two-phase commit left prepared on a worker, which also keeps its
	// rows locked (see citusProblems).
	CheckOldSnapshot = "old_snapshot"
)

// AllChecks lists the checks, in report order.
var AllChecks = []string{CheckStateRow, CheckPartitions, CheckCycleOrder, CheckCitusWorkers, CheckOldSnapshot}

// Problem is one finding of CheckState.
type Problem struct {
	Check  string // one of AllChecks
	Detail string // what is wrong and what repairs it, for an operator
}

// Damage reports whether p keeps this replica from answering truly, so
// that /readyz turns 503. An old snapshot does not: every answer stays
// true while the table grows, and taking every replica out of service
// over someone's pg_dump would turn a slow problem into an outage.
func (p Problem) Damage() bool { return p.Check != CheckOldSnapshot }

// ErrNoState is returned when the cycle_state row is missing.
var ErrNoState = errors.New("the cycle_state row is missing: run pointsd migrate to restore it")

// CheckState looks for damage done to pointsd's tables from outside, and
// for a snapshot older than OldSnapshotAfter, in two round trips over a
// handful of rows, the catalog and pg_stat_activity: cheap enough for
// every readiness probe. On Citus the second is a short transaction that
// asks the workers (citusProblems), each within workerConnectTimeout.
func CheckState(ctx context.Context, pool *pgxpool.Pool) ([]Problem, error) {
	var stateRows, missing, ahead int
	var cycle, maxBucket int64
	var citus bool
	err := pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus'),
		       (SELECT count(*) FROM cycle_state)::int,
		       coalesce((SELECT max(cycle) FROM cycle_state), 0),
		       (SELECT count(*) FROM buckets b
		        WHERE NOT EXISTS (SELECT FROM pg_inherits i
		                          WHERE i.inhrelid = b.partition AND i.inhparent = 'users'::regclass))::int,
		       (SELECT count(*) FROM buckets b WHERE b.cycle > (SELECT max(cycle) FROM cycle_state))::int,
		       coalesce((SELECT max(cycle) FROM buckets), 0)`).
		Scan(&citus, &stateRows, &cycle, &missing, &ahead, &maxBucket)
	if err != nil {
		return nil, fmt.Errorf("check state: %w", err)
	}
	var out []Problem
	if stateRows == 0 {
		out = append(out, Problem{CheckStateRow, ErrNoState.Error()})
	}
	if missing > 0 {
		out = append(out, Problem{CheckPartitions, fmt.Sprintf(
			"%d users partitions are missing, with their users: run pointsd migrate to recreate them, then pointsd seed to refill them", missing)})
	}
	if ahead > 0 {
		out = append(out, Problem{CheckCycleOrder, fmt.Sprintf(
			"%d buckets were rewritten in cycle %d but cycle_state says cycle %d, so cycles rewrite nothing: run pointsd migrate to restore the cycle number",
			ahead, maxBucket, cycle)})
	}
	if citus {
		// On Citus the users' rows, and what holds back their pruning,
		// are on the workers: what is checked there is their two-phase
		// commits.
		more, err := citusProblems(ctx, pool)
		return append(out, more...), err
	}
	horizon, err := ReadHorizon(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("check state: %w", err)
	}
	return append(out, horizon.Problems(OldSnapshotAfter)...), nil
}

// Repair undoes what CheckState finds, where it can, under the migration
// lock so that replicas starting together repair once. It returns one line
// per repair made. It never deletes: users lost with a partition come back
// with pointsd seed.
func Repair(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	// Nothing to repair is the rule: check first, so that a role that may
	// only read can run this too. An old snapshot is an operator's to end.
	problems, err := CheckState(ctx, pool)
	if err != nil || !slices.ContainsFunc(problems, Problem.Damage) {
		return nil, err
	}
	var done []string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		done = nil
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLockID)); err != nil {
			return err
		}
		steps := []func(context.Context, pgx.Tx) (string, error){
			repairPartitions, repairStateRow, repairCycleOrder,
		}
		for _, step := range steps {
			msg, err := step(ctx, tx)
			if err != nil {
				return err
			}
			if msg != "" {
				done = append(done, msg)
			}
		}
		if len(done) == 0 {
			return nil
		}
		// A repair changes what answers rely on (a new floor, cycle numbers,
		// buckets reset) outside the published schedule: every replica's
		// cache must drop its answer, as when a cycle starts.
		return Notify(ctx, tx, ChangesChannel, strconv.Itoa(AllBuckets))
	})
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	return done, nil
}

// repairPartitions gives every bucket its partition back: a detached one is
// attached again (its users and their draws intact), one recreated by hand
// under the bucket's name is adopted, and a dropped one is recreated, empty,
// with the modulus and remainder the bucket always had.
func repairPartitions(ctx context.Context, tx pgx.Tx) (string, error) {
	rows, err := tx.Query(ctx, `
		SELECT bucket FROM buckets b
		WHERE NOT EXISTS (SELECT FROM pg_inherits i
		                  WHERE i.inhrelid = b.partition AND i.inhparent = 'users'::regclass)
		ORDER BY bucket`)
	if err != nil {
		return "", err
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(missing) == 0 {
		return "", err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM buckets`).Scan(&n); err != nil {
		return "", err
	}
	var created, attached, adopted int
	for _, i := range missing {
		name := pgx.Identifier{partition.Name(i, n)}
		var exists, isPartition, same bool
		if err := tx.QueryRow(ctx, `
			SELECT to_regclass($1) IS NOT NULL,
			       EXISTS (SELECT FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = 'users'::regclass),
			       coalesce(to_regclass($1) = (SELECT partition FROM buckets WHERE bucket = $2), false)`,
			name.Sanitize(), i).Scan(&exists, &isPartition, &same); err != nil {
			return "", err
		}
		switch {
		case exists && !isPartition:
			// Detached: attach it again (it fails if rows were added that
			// do not belong to it).
			if _, err := tx.Exec(ctx, attachDDL(name, n, i)); err != nil {
				return "", fmt.Errorf("attach partition %s again: %w", name.Sanitize(), err)
			}
			attached++
			if same {
				continue // the bucket's own table: its cycle and seed hold
			}
		case exists:
			adopted++ // recreated by hand under the bucket's name
		default:
			if _, err := tx.Exec(ctx, partitionDDL(name, n, i)); err != nil {
				return "", fmt.Errorf("recreate partition %s: %w", name.Sanitize(), err)
			}
			created++
		}
		// A table new to the bucket: nothing is known of its users' draws
		// until the next cycle rewrites it.
		if _, err := tx.Exec(ctx, `UPDATE buckets SET partition = $2::regclass, cycle = 0, seed = 0 WHERE bucket = $1`,
			i, name.Sanitize()); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("users partitions: %d recreated (empty: run pointsd seed to refill them), %d attached again, %d adopted",
		created, attached, adopted), nil
}

// repairStateRow restores a deleted cycle_state row as the last cycle the
// buckets record, finished, with a new floor.
func repairStateRow(ctx context.Context, tx pgx.Tx) (string, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO cycle_state (cycle, seed, floor, finished_at)
		SELECT (SELECT coalesce(max(cycle), 0) FROM buckets),
		       coalesce((SELECT seed FROM buckets ORDER BY cycle DESC LIMIT 1), 0),
		       $1, now()
		WHERE NOT EXISTS (SELECT FROM cycle_state)`, rand.IntN(MaxPoints+1)) //nolint:gosec // G404: a game's floor, not a secret
	if err != nil || tag.RowsAffected() == 0 {
		return "", err
	}
	return "restored the missing cycle_state row (the cluster mode is rolling again: pointsd mode strict if it was strict)", nil
}

// repairCycleOrder moves a cycle number set back behind the buckets forward
// to the latest cycle they record, with that cycle's seed. If some buckets
// have not been rewritten in it, the cycle is left unfinished, so the next
// leader resumes it.
func repairCycleOrder(ctx context.Context, tx pgx.Tx) (string, error) {
	var from, to int64
	err := tx.QueryRow(ctx, `
		WITH latest AS (SELECT cycle, seed FROM buckets ORDER BY cycle DESC LIMIT 1),
		     old AS (SELECT cycle FROM cycle_state)
		UPDATE cycle_state s
		SET cycle = l.cycle, seed = l.seed,
		    finished_at = CASE WHEN EXISTS (SELECT FROM buckets WHERE cycle < l.cycle) THEN NULL ELSE now() END
		FROM latest l, old
		WHERE l.cycle > s.cycle
		RETURNING old.cycle, s.cycle`).Scan(&from, &to)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("moved the cycle number from %d forward to %d, the last cycle the buckets record", from, to), nil
}
