package pgsql

import (
	"context"
	"fmt"
)

// Notify sends payload on channel, delivered when db's transaction commits
// (at once outside one): a listener's heartbeat (see httpapi's liveness), or
// a repair's change to every bucket (see Repair).
func Notify(ctx context.Context, db DBTX, channel, payload string) error {
	if _, err := db.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("notify %s: %w", channel, err)
	}
	return nil
}
