package pgsql

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pointsd/pointsd"
)

// citusSeen is set once a query met a distributed users table: from then
// on this process reads answers the Citus way, which is also correct on
// plain PostgreSQL, only a round trip or two slower.
var citusSeen atomic.Bool

// isDistributedJoin reports whether err is Citus refusing the one-statement
// query because users is distributed and cycle_state and buckets are not.
func isDistributedJoin(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgerrcode.FeatureNotSupported &&
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
// coordinator's tables in one snapshot, then the users of one bucket after
// another (each a partition, whose shards are on the workers) until two
// are found: with uniform points the first bucket nearly always has them,
// and one partition is a few shards where users as a whole is every
// partition's shards, each a task for the coordinator to send.
//
// Citus has no distributed snapshot: a bucket's (or a strict cycle's)
// two-phase commit commits on the coordinator first, then on each worker,
// so for a few milliseconds a reader can see the new floor and bucket
// seeds with a worker's old points, or the reverse (and for longer when a
// worker died between the two: until Citus recovers the prepared
// transaction, see docs/CITUS.md). Points are a pure function of the seed
// the user's bucket records, so the workers are sent the bucket's cycle
// and seed as the snapshot has them and only answer users whose points
// are that draw (pointsd_bucket_draw): a user caught on the other side of
// a commit is passed over like one below the floor. An answer therefore never pairs a user's
// points with a floor or a bucket cycle they do not belong to.
func queryCitus(ctx context.Context, db DBTX) (pointsd.Answer, error) {
	b, ok := db.(beginner)
	if !ok {
		return pointsd.Answer{}, errors.New("query users: on citus, reads need a pool or a connection, not a transaction")
	}
	var a pointsd.Answer
	err := pgx.BeginTxFunc(ctx, b, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var err error
			a, err = readCitus(ctx, tx)
			return err
		})
	return a, err
}

// readCitus is queryCitus inside tx.
func readCitus(ctx context.Context, tx pgx.Tx) (pointsd.Answer, error) {
	// One round trip for the state and every bucket's partition, cycle
	// and seed, in bucket order.
	rows, err := tx.Query(ctx, `
		SELECT `+scheduleColumns+`,
		       (SELECT count(*) FROM buckets)::int AS buckets,
		       coalesce((SELECT min(bucket) FROM buckets WHERE cycle < s.cycle), -1) AS first_pending,
		       p.indexes, p.schemas, p.tables, p.cycles, p.seeds
		FROM cycle_state s, LATERAL (
			SELECT coalesce(array_agg(b.bucket ORDER BY b.bucket), '{}') AS indexes,
			       coalesce(array_agg(n.nspname::text ORDER BY b.bucket), '{}') AS schemas,
			       coalesce(array_agg(c.relname::text ORDER BY b.bucket), '{}') AS tables,
			       coalesce(array_agg(b.cycle ORDER BY b.bucket), '{}') AS cycles,
			       coalesce(array_agg(b.seed ORDER BY b.bucket), '{}') AS seeds
			FROM buckets b
			JOIN pg_inherits i ON i.inhrelid = b.partition AND i.inhparent = 'users'::regclass
			JOIN pg_class c ON c.oid = i.inhrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
		) p`)
	if err != nil {
		return pointsd.Answer{}, fmt.Errorf("query users: %w", err)
	}
	type state struct {
		pointsd.Schedule
		Buckets      int      `db:"buckets"`
		FirstPending int      `db:"first_pending"`
		Indexes      []int    `db:"indexes"`
		Schemas      []string `db:"schemas"`
		Tables       []string `db:"tables"`
		Cycles       []int64  `db:"cycles"`
		Seeds        []int64  `db:"seeds"`
	}
	st, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[state])
	if errors.Is(err, pgx.ErrNoRows) {
		return pointsd.Answer{}, ErrNoState
	}
	if err != nil {
		return pointsd.Answer{}, fmt.Errorf("query users: %w", err)
	}
	a := pointsd.Answer{Schedule: st.Schedule, Users: []pointsd.User{}, Buckets: st.Buckets, FirstPending: st.FirstPending}
	if NoneQualify(a.Floor) {
		return a, nil // nothing is above it: no need to ask the workers
	}
	type bucket struct {
		Index         int
		Schema, Table string
		Cycle, Seed   int64
	}
	buckets := make([]bucket, len(st.Indexes))
	for i := range buckets {
		buckets[i] = bucket{st.Indexes[i], st.Schemas[i], st.Tables[i], st.Cycles[i], st.Seeds[i]}
	}
	for _, b := range buckets {
		rows, err := tx.Query(ctx, `
			SELECT id, points FROM `+pgx.Identifier{b.Schema, b.Table}.Sanitize()+`
			WHERE points > $1 AND points = pointsd_bucket_draw(id, $2, $3)
			LIMIT $4`, a.Floor, b.Cycle, b.Seed, 2-len(a.Users))
		if err != nil {
			return pointsd.Answer{}, fmt.Errorf("query users: %w", err)
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pointsd.User, error) {
			u := pointsd.User{Bucket: b.Index, BucketCycle: b.Cycle}
			return u, r.Scan(&u.ID, &u.Points)
		})
		if err != nil {
			return pointsd.Answer{}, fmt.Errorf("query users: %w", err)
		}
		if a.Users = append(a.Users, found...); len(a.Users) == 2 {
			break
		}
	}
	return a, nil
}
