package httpapi

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgxlisten"

	"github.com/pointsd/pointsd/pgsql"
)

// Listen invalidates the cache whenever another process commits a change
// (the leader NOTIFYs in the committing transaction), until ctx ends. It
// holds one dedicated connection, and reconnects after losing it; whatever
// was missed meanwhile is covered by invalidating on every (re)connect.
// It also hears the other replicas' query times (see queryTimes).
// Beside it, it proves the connection alive with heartbeats (see
// liveness) and, when Config.Clock was nil, keeps the API's own clock
// synced on the pool.
func (a *API) Listen(ctx context.Context) {
	// It reconnects every second while the database is down: say so every
	// 10 s, with a count.
	failed := &sampledLog{logger: a.log, level: slog.LevelWarn, msg: "change listener", interval: 10 * time.Second}
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			conn, err := a.connectListener(ctx)
			if err == nil {
				a.live.connectedTo(conn)
			}
			return conn, err
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				a.live.lost(err)
				failed.log(ctx, slog.Any("err", err))
			}
		},
		ReconnectDelay: time.Second,
	}
	l.Handle(pgsql.ChangesChannel, invalidator{a})
	l.Handle(a.live.channel, a.live)
	if a.times.cluster {
		l.Handle(pgsql.QueryTimesChannel, a.times)
	}
	var bg sync.WaitGroup
	bg.Go(func() { a.live.run(ctx, a.cfg.Pool) })
	if a.ownClock {
		bg.Go(func() { a.clock.Run(ctx, a.cfg.Pool, pgsql.ClockSyncEvery) })
	}
	_ = l.Listen(ctx) // returns only when ctx ends
	bg.Wait()
}

// connectListener opens the listener's connection: a copy of the pool's
// configuration, which must be a direct one (a transaction pooler
// delivers no notifications), named for instance like the replica's other
// sessions. Tests replace it (API.connectListener) to cut the connection.
func connectListener(pool *pgxpool.Pool, instance string) func(context.Context) (*pgx.Conn, error) {
	return func(ctx context.Context) (*pgx.Conn, error) {
		cfg := pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["application_name"] = pgsql.SessionName(pgsql.ListenSession, instance)
		return pgx.ConnectConfig(ctx, cfg)
	}
}

type invalidator struct{ a *API }

func (i invalidator) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	bucket, err := strconv.Atoi(n.Payload)
	if err != nil {
		bucket = pgsql.AllBuckets // unknown: assume the worst
	}
	i.a.cache.committed(bucket)
	return nil
}

func (i invalidator) HandleBacklog(context.Context, string, *pgx.Conn) error {
	i.a.cache.invalidate()
	return nil
}
