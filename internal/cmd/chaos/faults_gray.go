package main

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// Gray failures of a replica: it stops without dying, or is cut off
// without a reset. Its sockets stay open, so nothing but pointsd's own
// liveness can tell the others it is gone.

// Bounds of the gray-failure scenarios.
const (
	grayHold     = 30 * time.Second // how long a gray fault lasts: well past the failover bound
	grayFailover = 10 * time.Second // another replica must lead this soon, while the fault lasts
)

// leaderSigstop SIGSTOPs the leader of two replicas mid-cycle for grayHold,
// then SIGCONTs it.
func leaderSigstop(mode string) func(context.Context, *sc) error {
	return func(ctx context.Context, x *sc) error {
		if err := x.start(ctx, mode, 2); err != nil {
			return err
		}
		leader, err := x.leader(ctx)
		if err != nil {
			return err
		}
		// A stopped process answers nothing: its timeouts are the fault's,
		// not the invariant's. It is probed again once resumed.
		x.prober.drop(leader)
		if err := x.waitMidCycle(ctx, mode); err != nil {
			return err
		}
		x.faultBegins(ctx)
		leader.signal(syscall.SIGSTOP)
		defer leader.signal(syscall.SIGCONT) // whatever happens, never leave it stopped
		x.res.didf("2 replicas, %s; SIGSTOP to the leader (%s) mid-cycle, SIGCONT %s later", mode, leader.name, grayHold)
		return x.grayFault(ctx, leader, true, func() error {
			leader.signal(syscall.SIGCONT)
			return nil
		})
	}
}

// grayFault carries a gray fault of the leader old, begun, to its end: a
// replica other than old must lead while it lasts; after grayHold, heal
// ends it, old (probed again if reprobe) must step down, and the
// invariants and the boundaries during the fault are checked.
func (x *sc) grayFault(ctx context.Context, old *replica, reprobe bool, heal func() error) error {
	x.failoverDuringFault(ctx, old)
	if !sleepCtx(ctx, time.Until(x.res.faultStart.Add(grayHold))) {
		return ctx.Err()
	}
	if err := heal(); err != nil {
		return err
	}
	x.faultEnds()
	if reprobe {
		x.prober.add(old)
	}
	x.stepsDown(ctx, old)
	x.conclude(ctx, concludeOpts{})
	x.boundariesDuringFault(ctx)
	return nil
}

// failoverDuringFault checks that a replica other than old leads within
// grayFailover of the fault's start, while old is still cut off.
func (x *sc) failoverDuringFault(ctx context.Context, old *replica) {
	next, at, err := leaderOf(ctx, x.others(old), grayFailover)
	if err != nil {
		x.res.add(check{"failover", false, fmt.Sprintf("no other replica led within %s of the fault, while it lasted", grayFailover)})
		return
	}
	took := at.Sub(x.res.faultStart)
	x.res.recovered("new leader (%s) %.1f s into the fault", next.name, took.Seconds())
	x.res.add(check{"failover", took <= grayFailover,
		fmt.Sprintf("%s leads %.1f s after the fault began, while it lasts (bound: %s)", next.name, took.Seconds(), grayFailover)})
}

// stepsDown checks that old, back from a gray fault, does not lead once
// another replica does: within two periods exactly one replica leads, and
// not old.
func (x *sc) stepsDown(ctx context.Context, old *replica) {
	deadline := time.Now().Add(2 * x.period)
	var detail string
	for {
		leaders := 0
		oldLeads := false
		for _, r := range x.replicas {
			if st, err := r.status(ctx); err == nil && st.Leader {
				leaders++
				oldLeads = oldLeads || r == old
			}
		}
		if leaders == 1 && !oldLeads {
			took := time.Since(x.res.faultEnd)
			x.res.add(check{"step down", true, fmt.Sprintf("%s follows %.1f s after it came back; one leader", old.name, took.Seconds())})
			return
		}
		detail = fmt.Sprintf("%d replicas say they lead, %s among them: %v", leaders, old.name, oldLeads)
		if time.Now().After(deadline) || !sleepCtx(ctx, 100*time.Millisecond) {
			x.res.add(check{"step down", false, detail + fmt.Sprintf(" (%s after it came back)", 2*x.period)})
			return
		}
	}
}

// boundariesDuringFault: at most one boundary passes without a cycle while
// the fault lasts (the failover's).
func (x *sc) boundariesDuringFault(ctx context.Context) {
	x.boundariesBetween(ctx, x.res.faultStart, x.res.faultEnd, "during the fault")
}

// boundariesBetween checks that at most one boundary in [from, to) passed
// without a cycle.
func (x *sc) boundariesBetween(ctx context.Context, from, to time.Time, what string) {
	due, skipped, err := x.skippedBoundaries(ctx, from, to)
	if err != nil {
		x.res.add(check{"boundaries", false, err.Error()})
		return
	}
	x.res.add(check{"boundaries", skipped <= 1, fmt.Sprintf("%d of %d boundaries %s passed without a cycle (bound: 1)", skipped, due, what)})
}

// skippedBoundaries counts the boundaries in [from, to), and those of them
// that started no cycle.
func (x *sc) skippedBoundaries(ctx context.Context, from, to time.Time) (due, skipped int, err error) {
	evs, err := readHistory(ctx, x.e.pg.db, from.Add(-x.period))
	if err != nil {
		return 0, 0, err
	}
	for b := ceilBoundary(from, x.period); b.Before(to); b = b.Add(x.period) {
		due++
		if !startedAt(evs, b) {
			skipped++
		}
	}
	return due, skipped, nil
}
