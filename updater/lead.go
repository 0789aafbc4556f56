package updater

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/pgsql"
)

// lead runs cycles on the schedule until ctx ends (nil) or it fails
// maxFailedCycles cycles in a row (the last error): an unfinished cycle is
// resumed first, whenever it started, then a cycle starts on every boundary.
// What to do after each step is after's to say (see outcome).
func (u *Updater) lead(ctx context.Context, term int64) error {
	ls := leadState{term: term}
	for ctx.Err() == nil {
		cycle, mode, err := u.step(ctx, &ls)
		o := judge(err, ctx.Err() != nil)
		var next nextStep
		ls, next = after(ls, o, cycle)
		u.logOutcome(o, cycle, mode, err, ls)
		switch next {
		case stopLeading:
			return nil
		case stepDown:
			return err
		case stepAfterPoll:
			if !sleep(ctx, u.cfg.LeaderPoll) {
				return nil
			}
		}
	}
	return nil
}

// logOutcome logs how a step on cycle ended, if it did not end well.
func (u *Updater) logOutcome(o outcome, cycle int64, mode pointsd.Mode, err error, ls leadState) {
	switch o {
	case interrupted:
		if cycle > 0 {
			fate := "buckets committed so far stay; the next leader rewrites the rest"
			if mode == pointsd.Strict {
				fate = "its transaction rolled back: the cycle did not happen"
			}
			u.log.Warn("cycle interrupted", slog.Int64("cycle", cycle), slog.String("mode", mode.String()),
				slog.String("outcome", fate), slog.Any("err", err))
		}
	case deposed:
		u.log.Warn("stepping down: another replica leads under a later term", slog.Int64("cycle", cycle), slog.Int64("term", ls.term))
	case locked:
		u.log.Warn("cycle cut short by a lock another session holds", slog.Int64("cycle", cycle),
			slog.String("mode", mode.String()), slog.Any("err", err))
	case noState:
		u.log.Error("cannot run cycles", slog.Any("err", err))
	case notStarted:
		u.log.Warn("another leader started the cycle", slog.Int64("cycle", cycle))
	case unreachable:
		u.log.Warn("cycle failed: database unreachable", slog.Int64("cycle", cycle), slog.Any("err", err))
	case outOfResources:
		u.log.Error("cycle failed: database out of resources", slog.String("problem", u.cfg.Metrics.CountDatabaseError(err)),
			slog.Int64("cycle", cycle), slog.Any("err", err))
	case failed:
		u.log.Error("cycle failed", slog.Int64("cycle", cycle), slog.Int("failed_in_a_row", ls.failedInARow), slog.Any("err", err))
	}
}

// step reads the state, decides the leader's next step (see decide) and
// carries it out. It returns the cycle it ran (0 if none), its mode and the
// error it ended with.
func (u *Updater) step(ctx context.Context, ls *leadState) (int64, pointsd.Mode, error) {
	st, err := pgsql.ReadState(ctx, u.cfg.Pool)
	if err != nil {
		return 0, "", err
	}
	u.reportDamage(ctx)
	d := decide(st, *ls, u.now(), u.cfg.Period)
	if d.Future {
		u.log.Warn("the published schedule is in the future (a leader with a fast clock, or an edit): not waiting for it",
			slog.Time("started_at", st.StartedAt), slog.Time("next_start", publishedNext(st)), slog.Int64("cycle", st.Cycle))
	}
	if d.Rule.resumes() {
		return u.resumeCycle(ctx, st, d, ls)
	}
	return u.startCycle(ctx, st, d, ls)
}

// resumeCycle carries out a resume decision: it finishes the cycle st
// describes, on its slots if d keeps them, else back to back. Without its
// slots it runs as a cycle run by hand does, with no period of its own.
func (u *Updater) resumeCycle(ctx context.Context, st pointsd.State, d decision, ls *leadState) (int64, pointsd.Mode, error) {
	u.log.Info("resuming cycle", slog.Int64("cycle", st.Cycle), slog.Int("buckets_left", st.BucketsTotal-st.BucketsDone))
	c := cycleOf(st)
	c.Term = ls.term
	if !d.OnSlots {
		c.Period, c.Spread = 0, 0 // no slots: as a cycle run by hand
	}
	_, err := u.resume(ctx, c)
	if err == nil {
		ls.finished = c.Cycle
	}
	return c.Cycle, st.Mode, err
}

// startCycle carries out a start decision: it publishes d.At if d says so,
// waits for it, and starts cycle d.Cycle in the cluster's mode.
func (u *Updater) startCycle(ctx context.Context, st pointsd.State, d decision, ls *leadState) (int64, pointsd.Mode, error) {
	if d.Publish {
		at, err := pgsql.PublishNextStart(ctx, u.cfg.Pool, st.Cycle, ls.term, d.At)
		if err != nil {
			return 0, "", err
		}
		if at.After(d.At) {
			return 0, "", errRescheduled
		}
	}
	if !sleep(ctx, d.At.Sub(u.now())) {
		return 0, "", ctx.Err()
	}
	// The mode is read at the boundary: it may have been set while this
	// leader waited.
	mode, err := pgsql.ClusterMode(ctx, u.cfg.Pool)
	if err != nil {
		return 0, "", err
	}
	u.observeMode(mode)
	c := u.newCycle(d.Cycle, d.At, d.Spread, mode)
	c.Term = ls.term
	u.countLateness(d, ls)
	_, err = u.start(ctx, c)
	if err == nil {
		ls.finished = c.Cycle
	}
	return c.Cycle, mode, err
}

// errRescheduled: the next start that stands is later than the one
// decided, so another leader published it meanwhile. The leader decides
// again from the state as it is now.
var errRescheduled = errors.New("the next start was published later meanwhile")

// countLateness counts d's start, if d says it is counted: late, if it
// starts after its boundary, and the boundaries skipped before it.
func (u *Updater) countLateness(d decision, ls *leadState) {
	if !d.Count {
		return
	}
	ls.counted = d.At
	if late := d.lateAt(u.now()); late > 0 {
		u.cfg.Metrics.CycleLateStarts.Inc()
		u.log.Info("cycle starting late, on the boundary it is due for", slog.Int64("cycle", d.Cycle),
			slog.Time("boundary", d.At), slog.Duration("late", late))
	}
	if d.Skipped > 0 {
		u.cfg.Metrics.CyclesSkipped.Add(float64(d.Skipped))
		u.log.Warn("period boundaries passed without a cycle", slog.Int64("skipped", d.Skipped),
			slog.Time("since", d.Since), slog.Time("this_cycle", d.At))
	}
}

// damageCheckTimeout bounds the leader's damage check before each cycle.
const damageCheckTimeout = 5 * time.Second

// reportDamage checks the database for damage done from outside, logs each
// problem and tells the listener (which owns the metric).
func (u *Updater) reportDamage(ctx context.Context) {
	// Bounded: a check that hangs (a worker that drops packets on Citus)
	// must not hold the leader past its boundaries.
	ctx, cancel := context.WithTimeout(ctx, damageCheckTimeout)
	defer cancel()
	problems, err := pgsql.CheckState(ctx, u.cfg.Pool)
	if err != nil {
		return // the cycle will meet the same error and report it
	}
	u.cfg.Listener.Checked(problems)
	for _, p := range problems {
		if !p.Damage() {
			u.log.Warn("database problem", slog.String("check", p.Check), slog.String("problem", p.Detail))
			continue
		}
		u.log.Error("database damaged", slog.String("check", p.Check), slog.String("problem", p.Detail))
	}
}
