package updater

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/pgsql"
)

// Leadership is a PostgreSQL session advisory lock held on a dedicated
// connection, plus a lease renewed in the database.
//
// The lock makes failover fast when a leader dies: the server releases it
// the moment the session ends. But a leader that stops without dying (a
// paused process, a host cut off without a reset) keeps its session, and
// so the lock, for minutes. So the leader also renews a lease every
// LeaderPoll, on the database's clock. A follower that finds the lock held
// and the lease older than LeaseTimeout ends the holder's sessions, takes
// the lock and leads.
//
// Each leadership has a term, raised by the new leader, and every write a
// leader makes checks that its term is still the current one. An evicted
// leader that wakes up gets pgsql.ErrDeposed and writes nothing; the new
// leader also ends the old one's sessions when it takes its term, so a
// transaction the old one left open releases its locks at once.

// campaign blocks until this updater holds the leader lock and a term, or
// ctx ends. It returns the term, a context that ends when leadership is
// lost, and a release function that gives it up.
func (u *Updater) campaign(ctx context.Context) (int64, context.Context, func(), error) {
	cfg := u.cfg.Pool.Config().ConnConfig.Copy()
	pgsql.ConfigureSession(cfg, pgsql.SessionName(pgsql.LeaderSession, u.cfg.Instance), true,
		pgsql.Limits{Statement: u.cfg.LeaderPoll + 10*time.Second, Lock: time.Second})

	var conn *pgx.Conn
	var term int64
	var warned time.Time // the database being down is said every 10 s, not every poll
	closeConn := func() {
		if conn != nil {
			_ = conn.Close(context.Background())
			conn = nil
		}
	}
	for {
		if conn == nil {
			var err error
			cctx, cancel := context.WithTimeout(ctx, u.cfg.LeaderPoll+5*time.Second)
			conn, err = pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil {
				conn = nil
				if pgsql.PoolerRefusal(err) {
					u.setProblem(pgsql.PoolerProblem)
				} else if ctx.Err() == nil && time.Since(warned) >= 10*time.Second {
					warned = time.Now()
					u.log.Warn("leader election: waiting for the database", slog.Any("err", err))
				}
			}
		}
		if conn != nil {
			// Bounded: a frozen path to the database must not hold up
			// the campaign until TCP gives up.
			tctx, cancel := context.WithTimeout(ctx, u.cfg.LeaderPoll+10*time.Second)
			var err error
			term, err = u.tryLead(tctx, conn)
			cancel()
			if term > 0 {
				break
			}
			if err != nil && ctx.Err() == nil {
				u.log.Warn("leader election", slog.Any("err", err))
				closeConn()
			}
		}
		if !sleep(ctx, u.cfg.LeaderPoll) {
			closeConn()
			return 0, nil, nil, ctx.Err()
		}
	}

	lctx, lose := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sleep(lctx, u.cfg.LeaderPoll) {
			if err := u.renew(lctx, conn, term); err != nil && lctx.Err() == nil {
				u.log.Warn("stepping down", slog.Any("err", err), slog.Int64("term", term))
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
	return term, lctx, release, nil
}

// renew renews term's lease and reads the cluster's mode, on the lock's
// connection: the lease proves this leader alive, and failing to renew it
// is a reason to step down.
func (u *Updater) renew(ctx context.Context, conn *pgx.Conn, term int64) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.LeaderPoll)
	defer cancel()
	ok, err := pgsql.RenewLease(ctx, conn, term)
	if err != nil {
		return fmt.Errorf("leader connection lost: %w", err)
	}
	if !ok {
		return pgsql.ErrDeposed
	}
	u.emit(Event{Kind: EventLeaseRenewed})
	mode, err := pgsql.ClusterMode(ctx, conn)
	if err != nil {
		return fmt.Errorf("leader connection lost: %w", err)
	}
	u.observeMode(mode)
	return nil
}

// tryLead takes the leader lock on conn and a new term, if this replica can
// do the leader's work and the lock is free, or held by a leader whose
// lease went stale. It returns the term, 0 when this replica does not
// lead. A replica that cannot lead (its role may only read, or its
// connection goes through a transaction pooler) does not campaign, and
// says why in its status.
func (u *Updater) tryLead(ctx context.Context, conn *pgx.Conn) (int64, error) {
	why, err := pgsql.CanLead(ctx, conn)
	if err != nil {
		return 0, err
	}
	if why == "" {
		if why, err = pooled(ctx, conn); err != nil {
			return 0, err
		}
	}
	u.setProblem(why)
	if why != "" && u.cfg.Mode != "" && !u.modeSet {
		u.modeSet = true // said once
		u.log.Error("cannot set the cluster mode from -mode: this replica cannot write", slog.String("mode", u.cfg.Mode.String()), slog.String("why", why))
	}
	if why == "" && u.cfg.Mode != "" && !u.modeSet {
		from, err := pgsql.SetClusterMode(ctx, conn, u.cfg.Mode)
		if err != nil {
			return 0, err
		}
		u.modeSet = true
		u.log.Info("set the cluster mode (from -mode)", slog.String("mode", u.cfg.Mode.String()), slog.Int64("from_cycle", from))
	}
	mode, err := pgsql.ClusterMode(ctx, conn)
	if err != nil {
		return 0, err
	}
	u.observeMode(mode)
	if why != "" {
		return 0, nil
	}
	ok, err := pgsql.TryLeaderLock(ctx, conn)
	if err == nil && !ok {
		if ok, err = u.evict(ctx, conn); err == nil && ok {
			ok, err = pgsql.TryLeaderLock(ctx, conn)
		}
	}
	if err != nil || !ok {
		return 0, err
	}
	term, ended, err := pgsql.TakeTerm(ctx, conn, u.cfg.Instance)
	if err != nil {
		return 0, err // the caller closes conn, which releases the lock
	}
	if ended > 0 {
		u.log.Warn("ended the previous leader's sessions, which were still open", slog.Int("sessions", ended), slog.Int64("term", term))
	}
	return term, nil
}

// evict ends the sessions of a leader whose lease went stale while it
// holds the lock, and reports whether it did.
func (u *Updater) evict(ctx context.Context, conn *pgx.Conn) (bool, error) {
	lease, err := pgsql.ReadLease(ctx, conn)
	if err != nil || lease.Holder == "" || lease.Age <= u.cfg.LeaseTimeout ||
		lease.LockHolder != pgsql.SessionName(pgsql.LeaderSession, lease.Holder) {
		return false, err
	}
	ended, err := pgsql.EvictLeader(ctx, conn, lease.Term, u.cfg.LeaseTimeout)
	if err != nil {
		return false, err
	}
	if ended > 0 {
		u.cfg.Metrics.LeaderEvictions.Inc()
		u.log.Warn("evicted a leader that stopped renewing its lease (paused, or cut off): ended its sessions",
			slog.String("holder", lease.Holder), slog.Int64("term", lease.Term),
			slog.Duration("lease_age", lease.Age), slog.Int("sessions", ended))
		u.emit(Event{Kind: EventEvicted})
	}
	return ended > 0, nil
}

// pooled says why conn cannot hold the leader lock when it goes through a
// connection pooler ("" when it does not): a session advisory lock taken
// through a transaction pooler stays with a server connection that other
// clients then use.
func pooled(ctx context.Context, conn *pgx.Conn) (string, error) {
	if ok, err := pgsql.Pooled(ctx, conn); err != nil || !ok {
		return "", err
	}
	return pgsql.PoolerProblem, nil
}

// CannotLead records why this replica cannot lead before Run could find
// out itself: serve's migration failed for that reason (a pooler refused
// the direct connection). /status and /readyz show it.
func (u *Updater) CannotLead(why string) { u.setProblem(why) }
