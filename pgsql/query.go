package pgsql

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd"
)

// QueryAnswer returns up to two users with points strictly above the current
// floor. One statement, so the users and the floor come from one snapshot.
// The scan stops at the second match: with uniform points that is within a
// few hundred rows, and no index on points is needed (see migrations/00001_users.sql); when
// the floor is 100 the one-time filter skips the scan entirely.
//
// On Citus the statement is refused (users is distributed, the state is
// not) and the answer is read in one transaction instead: see queryCitus.
// db must then be a pool or a connection.
func QueryAnswer(ctx context.Context, db DBTX) (pointsd.Answer, error) {
	if citusSeen.Load() {
		return queryCitus(ctx, db)
	}
	a, err := queryOne(ctx, db)
	if err != nil && isDistributedJoin(err) {
		citusSeen.Store(true)
		return queryCitus(ctx, db)
	}
	return a, err
}

// queryOne is QueryAnswer's one statement, on a single PostgreSQL.
func queryOne(ctx context.Context, db DBTX) (pointsd.Answer, error) {
	rows, err := db.Query(ctx, `
		SELECT `+scheduleColumns+`,
		       (SELECT count(*) FROM buckets)::int AS buckets,
		       coalesce((SELECT min(bucket) FROM buckets WHERE cycle < s.cycle), -1) AS first_pending,
		       u.id, u.points, b.bucket, b.cycle AS bucket_cycle
		FROM cycle_state s
		LEFT JOIN LATERAL (
			SELECT id, points, tableoid FROM users
			WHERE points > s.floor AND s.floor < 100
			LIMIT 2
		) u ON true
		LEFT JOIN buckets b ON b.partition = u.tableoid`)
	if err != nil {
		return pointsd.Answer{}, fmt.Errorf("query users: %w", err)
	}
	type row struct {
		pointsd.Schedule
		Buckets      int    `db:"buckets"`
		FirstPending int    `db:"first_pending"`
		ID           *int64 `db:"id"`
		Points       *int   `db:"points"`
		Bucket       *int   `db:"bucket"`
		BucketCycle  *int64 `db:"bucket_cycle"`
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[row])
	if err != nil {
		return pointsd.Answer{}, fmt.Errorf("query users: %w", err)
	}
	if len(got) == 0 {
		return pointsd.Answer{}, ErrNoState
	}
	r := got[0]
	a := pointsd.Answer{Schedule: r.Schedule, Users: []pointsd.User{}, Buckets: r.Buckets, FirstPending: r.FirstPending}
	for _, r := range got {
		if r.ID != nil {
			u := pointsd.User{ID: *r.ID, Points: *r.Points, Bucket: pointsd.NoBucket, BucketCycle: pointsd.NoBucket}
			if r.Bucket != nil { // nil: a partition buckets does not know (made by hand)
				u.Bucket, u.BucketCycle = *r.Bucket, *r.BucketCycle
			}
			a.Users = append(a.Users, u)
		}
	}
	return a, nil
}
