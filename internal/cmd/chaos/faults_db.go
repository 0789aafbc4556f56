package main

import (
	"context"
	"time"
)

// Faults of the database server: restarted, down, its sessions killed.

// pgRestart stops PostgreSQL with stopMode in the middle of a cycle of mode
// and starts it again at once, under two replicas.
func pgRestart(stopMode, mode string) func(context.Context, *sc) error {
	return func(ctx context.Context, x *sc) error {
		if err := x.start(ctx, mode, 2); err != nil {
			return err
		}
		if err := x.waitMidCycle(ctx, mode); err != nil {
			return err
		}
		x.faultBegins(ctx)
		if err := x.e.pg.stop(ctx, stopMode); err != nil {
			return err
		}
		stopped := time.Since(x.res.faultStart)
		if err := x.e.pg.start(ctx); err != nil {
			return err
		}
		x.faultEnds()
		x.res.didf("2 replicas, %s; `pg_ctl stop -m %s` mid-cycle (took %.2f s), then started again: down %.2f s",
			mode, stopMode, stopped.Seconds(), x.res.faultEnd.Sub(x.res.faultStart).Seconds())
		x.conclude(ctx, concludeOpts{})
		return nil
	}
}

// pgDown stops PostgreSQL for 30 s under two replicas.
func pgDown(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 2); err != nil {
		return err
	}
	if err := x.waitMidCycle(ctx, "rolling"); err != nil {
		return err
	}
	x.faultBegins(ctx)
	if err := x.e.pg.stop(ctx, "fast"); err != nil {
		return err
	}
	if !sleepCtx(ctx, time.Until(x.res.faultStart.Add(30*time.Second))) {
		return ctx.Err()
	}
	if err := x.e.pg.start(ctx); err != nil {
		return err
	}
	x.faultEnds()
	x.res.didf("2 replicas, rolling; `pg_ctl stop -m fast` mid-cycle, started again after %.1f s",
		x.res.faultEnd.Sub(x.res.faultStart).Seconds())
	x.conclude(ctx, concludeOpts{})
	return nil
}

// terminateSessions kills every pointsd session (queries, updater, leader
// lock, listener) once a second for 20 s.
func terminateSessions(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 2); err != nil {
		return err
	}
	if err := x.waitMidCycle(ctx, "rolling"); err != nil {
		return err
	}
	x.faultBegins(ctx)
	killed, rounds := 0, 0
	for time.Since(x.res.faultStart) < 20*time.Second {
		var n int
		err := x.e.pg.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
			FROM pg_stat_activity WHERE application_name LIKE 'pointsd%' AND pid <> pg_backend_pid()`).Scan(&n)
		if err != nil {
			return err
		}
		killed += n
		rounds++
		if !sleepCtx(ctx, time.Until(x.res.faultStart.Add(time.Duration(rounds)*time.Second))) {
			return ctx.Err()
		}
	}
	x.faultEnds()
	x.res.didf("2 replicas, rolling; `pg_terminate_backend` on every `pointsd%%` session, %d times over %.0f s: %d sessions killed",
		rounds, x.res.faultEnd.Sub(x.res.faultStart).Seconds(), killed)
	x.conclude(ctx, concludeOpts{})
	return nil
}

// shortOutage stops PostgreSQL for about 3 s in the middle of a rolling
// cycle under ONE replica: the cycle in flight must still finish, and the
// next boundary must start the next cycle on time.
func shortOutage(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 1); err != nil {
		return err
	}
	if err := x.waitMidCycle(ctx, "rolling"); err != nil {
		return err
	}
	st, err := readState(ctx, x.e.pg.db)
	if err != nil {
		return err
	}
	x.faultBegins(ctx)
	if err := x.e.pg.stop(ctx, "fast"); err != nil {
		return err
	}
	if !sleepCtx(ctx, time.Until(x.res.faultStart.Add(3*time.Second))) {
		return ctx.Err()
	}
	if err := x.e.pg.start(ctx); err != nil {
		return err
	}
	x.faultEnds()
	next := st.StartedAt.Add(x.period)
	x.res.didf("1 replica, rolling, period %s; `pg_ctl stop -m fast` in cycle %d, started again after %.1f s; the %s boundary must be kept",
		x.period, st.Cycle, x.res.faultEnd.Sub(x.res.faultStart).Seconds(), clock(next))
	x.conclude(ctx, concludeOpts{firstDue: next})
	return nil
}
