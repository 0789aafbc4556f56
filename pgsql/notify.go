package pgsql

import (
	"context"
	"fmt"
)

// Notify sends payload on channel, committed at once: a listener's
// heartbeat (see httpapi's liveness), not a change.
func Notify(ctx context.Context, db DBTX, channel, payload string) error {
	if _, err := db.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("notify %s: %w", channel, err)
	}
	return nil
}
