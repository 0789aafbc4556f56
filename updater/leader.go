package updater

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/sql"
)

// Leadership is a PostgreSQL session advisory lock held on a dedicated
// connection, rather than a lease row: the server releases it the moment the
// session ends (process killed, connection terminated), so failover needs no
// lease to expire and no clock to agree on, and there is nothing to renew.
// The connection asks the server to probe the client with TCP keepalives,
// so a leader whose host vanished loses the lock within about 10 s. The
// leader pings its connection every LeaderPoll and steps down when it fails.
// Every write is fenced anyway: cycles and buckets are claimed by number in
// their own transactions, so even two leaders could not rewrite a bucket
// twice in one cycle.

// campaign blocks until this updater holds the leader lock or ctx ends. It
// returns a context that ends when leadership is lost, and a release
// function that gives it up.
func (u *Updater) campaign(ctx context.Context) (context.Context, func(), error) {
	cfg := u.cfg.Pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "pointsd-leader"
	cfg.RuntimeParams["tcp_keepalives_idle"] = "5"
	cfg.RuntimeParams["tcp_keepalives_interval"] = "2"
	cfg.RuntimeParams["tcp_keepalives_count"] = "3"

	var conn *pgx.Conn
	var warned time.Time // the database being down is said every 10 s, not every poll
	for {
		if conn == nil {
			var err error
			cctx, cancel := context.WithTimeout(ctx, u.cfg.LeaderPoll+5*time.Second)
			conn, err = pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil && ctx.Err() == nil && time.Since(warned) >= 10*time.Second {
				warned = time.Now()
				u.log.Warn("leader election: waiting for the database", slog.Any("err", err))
			}
		}
		if conn != nil {
			ok, err := u.tryLead(ctx, conn)
			if ok {
				break
			}
			if err != nil && ctx.Err() == nil {
				u.log.Warn("leader election", slog.Any("err", err))
				_ = conn.Close(context.Background())
				conn = nil
			}
		}
		if !sleep(ctx, u.cfg.LeaderPoll) {
			if conn != nil {
				_ = conn.Close(context.Background())
			}
			return nil, nil, ctx.Err()
		}
	}

	lctx, lose := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sleep(lctx, u.cfg.LeaderPoll) {
			// Reading the cluster's mode doubles as the ping.
			pctx, cancel := context.WithTimeout(lctx, u.cfg.LeaderPoll)
			mode, err := pgsql.ClusterMode(pctx, conn)
			cancel()
			u.observeMode(mode)
			if err != nil && lctx.Err() == nil {
				u.log.Warn("leader connection lost; stepping down", slog.Any("err", err))
				lose()
			}
		}
	}()
	release := func() {
		lose()
		<-done
		// Closing the session releases the lock.
		_ = conn.Close(context.Background())
	}
	return lctx, release, nil
}

// tryLead takes the leader lock on conn if this replica can do the
// leader's work and the lock is free. A replica that cannot (its role may
// only read) does not campaign, and says why in its status.
func (u *Updater) tryLead(ctx context.Context, conn *pgx.Conn) (bool, error) {
	why, err := pgsql.CanLead(ctx, conn)
	if err != nil {
		return false, err
	}
	u.setProblem(why)
	if why != "" && u.cfg.Mode != "" && !u.modeSet {
		u.modeSet = true // said once
		u.log.Error("cannot set the cluster mode from -mode: this replica cannot write", slog.String("mode", string(u.cfg.Mode)), slog.String("why", why))
	}
	if why == "" && u.cfg.Mode != "" && !u.modeSet {
		from, err := pgsql.SetClusterMode(ctx, conn, string(u.cfg.Mode))
		if err != nil {
			return false, err
		}
		u.modeSet = true
		u.log.Info("set the cluster mode (from -mode)", slog.String("mode", string(u.cfg.Mode)), slog.Int64("from_cycle", from))
	}
	mode, err := pgsql.ClusterMode(ctx, conn)
	if err != nil {
		return false, err
	}
	u.observeMode(mode)
	if why != "" {
		return false, nil
	}
	return pgsql.TryLeaderLock(ctx, conn)
}
