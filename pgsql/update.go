package pgsql

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// UpdateAll re-draws every user's points from seed and stamps updated_at,
// in whatever transaction db is: the strict cycle's statement.
func UpdateAll(ctx context.Context, db DBTX, seed int64) (int64, error) {
	tag, err := db.Exec(ctx,
		`UPDATE users SET points = pointsd_draw(id, $1), updated_at = now()`, seed)
	if err != nil {
		return 0, fmt.Errorf("update users: %w", err)
	}
	return tag.RowsAffected(), nil
}

// UpdatePartition re-draws the points of every user in one partition (a
// rolling bucket's table). The partition is addressed directly, so no time is
// spent routing rows or pruning the other partitions.
func UpdatePartition(ctx context.Context, db DBTX, partition pgx.Identifier, seed int64) (int64, error) {
	tag, err := db.Exec(ctx, `UPDATE `+partition.Sanitize()+`
		SET points = pointsd_draw(id, $1), updated_at = now()`, seed)
	if err != nil {
		return 0, fmt.Errorf("update %s: %w", partition.Sanitize(), err)
	}
	return tag.RowsAffected(), nil
}
