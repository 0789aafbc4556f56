package pgsql

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// citusSeen is set once a query met a distributed users table: from then
// on this process reads answers the Citus way, which is also correct on
// plain PostgreSQL, only a round trip or two slower.
var citusSeen atomic.Bool

// tornRetries bounds how often queryCitus reads again when what it read
// mixes two generations (see queryCitus): such a read only happens while a
// two-phase commit is between its coordinator's commit and its workers',
// a matter of milliseconds.
const tornRetries = 8

// ErrTornRead is returned when every retry of a Citus read found users
// from another generation than the floor's, which means many commits are
// stuck half-way (a worker holding prepared transactions nobody commits).
var ErrTornRead = errors.New("every read mixed two generations of points: a distributed commit is stuck (see pg_prepared_xacts on the workers)")

// isDistributedJoin reports whether err is Citus refusing the one-statement
// query because users is distributed and cycle_state and buckets are not.
func isDistributedJoin(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "0A000" && // feature_not_supported
		(pgErr.Message == "direct joins between distributed and local tables are not supported" ||
			pgErr.Message == "complex joins are only supported when all distributed tables are co-located and joined on their distribution columns")
}

// beginner is what queryCitus needs of db: a pool or a connection can
// start a transaction of a chosen isolation, a transaction cannot.
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// queryCitus is QueryAnswer on Citus, where users (distributed) cannot be
// joined with cycle_state and buckets (on the coordinator) in one
// statement. It reads them in one REPEATABLE READ transaction: the
// coordinator's tables in one snapshot, then users on the workers.
//
// Citus has no distributed snapshot: a bucket's (or a strict cycle's)
// two-phase commit commits on the coordinator first, then on each worker,
// so for a few milliseconds a reader can see the new floor and bucket
// seeds with a worker's old points, or the reverse (and for longer when a
// worker died between the two: until Citus recovers the prepared
// transaction, see docs/CITUS.md). Points are a pure function of the seed
// the user's bucket records, so every user read is checked against the
// snapshot's buckets; a user whose points do not match straddled a commit,
// and the answer is read again without that user. An answer therefore never
// pairs a user's points with a floor or a bucket cycle they do not belong
// to. (An answer with fewer than two users has fewer rows to check: with
// uniform points it only happens when the floor is 100 or there are
// almost no users.)
func queryCitus(ctx context.Context, db DBTX) (Answer, error) {
	b, ok := db.(beginner)
	if !ok {
		return Answer{}, errors.New("query users: on citus, reads need a pool or a connection, not a transaction")
	}
	skip := []int64{}
	for range tornRetries {
		var a Answer
		var torn []int64
		err := pgx.BeginTxFunc(ctx, b, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
			func(tx pgx.Tx) error {
				var err error
				a, torn, err = readCitus(ctx, tx, skip)
				return err
			})
		if err != nil || len(torn) == 0 {
			return a, err
		}
		skip = append(skip, torn...)
	}
	return Answer{}, ErrTornRead
}

// readCitus is one attempt of queryCitus, inside tx, leaving out the users
// in skip; torn lists the users read whose points belong to another
// generation than the snapshot's buckets.
func readCitus(ctx context.Context, tx pgx.Tx, skip []int64) (a Answer, torn []int64, err error) {
	rows, err := tx.Query(ctx, `
		SELECT `+scheduleColumns+`,
		       (SELECT count(*) FROM buckets)::int AS buckets,
		       coalesce((SELECT min(bucket) FROM buckets WHERE cycle < s.cycle), -1) AS first_pending
		FROM cycle_state s`)
	if err != nil {
		return a, nil, fmt.Errorf("query users: %w", err)
	}
	type state struct {
		Schedule
		Buckets      int `db:"buckets"`
		FirstPending int `db:"first_pending"`
	}
	st, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[state])
	if errors.Is(err, pgx.ErrNoRows) {
		return a, nil, ErrNoState
	}
	if err != nil {
		return a, nil, fmt.Errorf("query users: %w", err)
	}
	a = Answer{Schedule: st.Schedule, Users: []User{}, Buckets: st.Buckets, FirstPending: st.FirstPending}
	if a.Floor >= 100 {
		return a, nil, nil // nothing is above 100: no need to ask the workers
	}
	// The workers each stop at their second match; the coordinator keeps
	// two of them.
	rows, err = tx.Query(ctx, `SELECT id, points FROM users WHERE points > $1 AND id <> ALL($2) LIMIT 2`, a.Floor, skip)
	if err != nil {
		return a, nil, fmt.Errorf("query users: %w", err)
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		u := User{Bucket: NoBucket, BucketCycle: NoBucket}
		return u, r.Scan(&u.ID, &u.Points)
	})
	if err != nil {
		return a, nil, fmt.Errorf("query users: %w", err)
	}
	for _, u := range found {
		// A user's bucket is the partition its id hashes to: bucket i is
		// the partition with remainder i (see createUsers).
		var bucket int
		var cycle int64
		var want int
		err := tx.QueryRow(ctx, `
			SELECT bucket, cycle, CASE WHEN cycle = 0 THEN 0 ELSE pointsd_draw($1, seed) END
			FROM buckets
			WHERE satisfies_hash_partition('users'::regclass, $2, bucket, $1::bigint)`, u.ID, a.Buckets).
			Scan(&bucket, &cycle, &want)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// A partition no bucket maps (made by hand): nothing to check
			// it against, and nothing is known of when it changes.
		case err != nil:
			return a, nil, fmt.Errorf("query users: find bucket: %w", err)
		case want != u.Points:
			torn = append(torn, u.ID)
			continue
		default:
			u.Bucket, u.BucketCycle = bucket, cycle
		}
		a.Users = append(a.Users, u)
	}
	return a, torn, nil
}
