package httpapi

import (
	"cmp"
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/pointsd/pointsd/sql"
)

// Listen invalidates the cache whenever another process commits a change
// (the leader NOTIFYs in the committing transaction), until ctx ends. It
// holds one dedicated connection, and reconnects after losing it; whatever
// was missed meanwhile is covered by invalidating on every (re)connect.
func (a *API) Listen(ctx context.Context) {
	// It reconnects every second while the database is down: say so every
	// 10 s, with a count.
	failed := &sampledLog{logger: a.log, level: slog.LevelWarn, msg: "change listener", interval: 10 * time.Second}
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			cfg := cmp.Or(a.cfg.Direct, a.cfg.Pool).Config().ConnConfig.Copy()
			cfg.RuntimeParams["application_name"] = pgsql.ListenSession
			return pgx.ConnectConfig(ctx, cfg)
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				failed.log(ctx, slog.Any("err", err))
			}
		},
		ReconnectDelay: time.Second,
	}
	l.Handle(pgsql.ChangesChannel, invalidator{a})
	_ = l.Listen(ctx) // returns only when ctx ends
}

type invalidator struct{ a *API }

func (i invalidator) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	bucket, err := strconv.Atoi(n.Payload)
	if err != nil {
		bucket = pgsql.AllBuckets // unknown: assume the worst
	}
	i.a.Committed(bucket)
	return nil
}

func (i invalidator) HandleBacklog(context.Context, string, *pgx.Conn) error {
	i.a.cache.invalidate()
	return nil
}
