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
// the user's bucket records, so the workers are sent every bucket's cycle
// and seed as the snapshot has them and only answer users whose points
// are that draw: a user caught on the other side of a commit is passed
// over like one below the floor. An answer therefore never pairs a user's
// points with a floor or a bucket cycle they do not belong to.
func queryCitus(ctx context.Context, db DBTX) (Answer, error) {
	b, ok := db.(beginner)
	if !ok {
		return Answer{}, errors.New("query users: on citus, reads need a pool or a connection, not a transaction")
	}
	var a Answer
	err := pgx.BeginTxFunc(ctx, b, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var err error
			a, err = readCitus(ctx, tx)
			return err
		})
	return a, err
}

// readCitus is queryCitus inside tx.
func readCitus(ctx context.Context, tx pgx.Tx) (Answer, error) {
	rows, err := tx.Query(ctx, `
		SELECT `+scheduleColumns+`,
		       (SELECT count(*) FROM buckets)::int AS buckets,
		       coalesce((SELECT min(bucket) FROM buckets WHERE cycle < s.cycle), -1) AS first_pending,
		       (SELECT array_agg(cycle ORDER BY bucket) FROM buckets) AS cycles,
		       (SELECT array_agg(seed ORDER BY bucket) FROM buckets) AS seeds
		FROM cycle_state s`)
	if err != nil {
		return Answer{}, fmt.Errorf("query users: %w", err)
	}
	type state struct {
		Schedule
		Buckets      int     `db:"buckets"`
		FirstPending int     `db:"first_pending"`
		Cycles       []int64 `db:"cycles"`
		Seeds        []int64 `db:"seeds"`
	}
	st, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[state])
	if errors.Is(err, pgx.ErrNoRows) {
		return Answer{}, ErrNoState
	}
	if err != nil {
		return Answer{}, fmt.Errorf("query users: %w", err)
	}
	a := Answer{Schedule: st.Schedule, Users: []User{}, Buckets: st.Buckets, FirstPending: st.FirstPending}
	if a.Floor >= 100 || len(st.Cycles) == 0 {
		return a, nil // nothing is above 100: no need to ask the workers
	}
	// Each worker stops at its second match; the coordinator keeps two.
	rows, err = tx.Query(ctx, `
		SELECT id, points, bucket FROM (
			SELECT id, points, `+bucketOfID+` AS bucket FROM users WHERE points > $1
		) u
		WHERE points = CASE WHEN ($3::bigint[])[bucket + 1] = 0 THEN 0 ELSE pointsd_draw(id, ($4::bigint[])[bucket + 1]) END
		LIMIT 2`, a.Floor, len(st.Cycles), st.Cycles, st.Seeds)
	if err != nil {
		return Answer{}, fmt.Errorf("query users: %w", err)
	}
	a.Users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var u User
		err := r.Scan(&u.ID, &u.Points, &u.Bucket)
		if err == nil {
			u.BucketCycle = st.Cycles[u.Bucket]
		}
		return u, err
	})
	if err != nil {
		return Answer{}, fmt.Errorf("query users: %w", err)
	}
	return a, nil
}

// bucketOfID is the bucket (the users partition) of user id among $2
// buckets: PostgreSQL's hash partitioning, spelled out so that the
// workers can compute it. Bucket i is the partition with remainder i (see
// createUsers), and PostgreSQL routes a bigint key to the remainder of
// hash_combine64(0, hashint8extended(id, HASH_PARTITION_SEED)), as an
// unsigned 64-bit number, by the modulus; hash_combine64(0, h) is h +
// 0x49a0f4dd15e5a8e3, wrapping. The Citus tests check each answered
// user's bucket against the partition that holds it.
const bucketOfID = `(((hashint8extended(id, 8816678312871386365)::numeric + 5305509591434766563 + 18446744073709551616)
	% 18446744073709551616) % $2)::int`
