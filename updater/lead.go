package updater

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pointsd/pointsd/partition"
	"github.com/pointsd/pointsd/sql"
)

// lead runs cycles on the schedule until ctx ends (nil) or it fails
// maxFailedCycles cycles in a row (the last error): an unfinished cycle is
// resumed first, whenever it started, then a cycle starts on every boundary.
func (u *Updater) lead(ctx context.Context, term int64) error {
	failed := 0
	ls := leadState{failedCycle: -1, term: term}
	for ctx.Err() == nil {
		cycle, mode, err := u.step(ctx, &ls)
		switch {
		case err == nil:
			failed = 0
			continue
		case ctx.Err() != nil:
			if cycle > 0 {
				outcome := "buckets committed so far stay; the next leader rewrites the rest"
				if mode == Strict {
					outcome = "its transaction rolled back: the cycle did not happen"
				}
				u.log.Warn("cycle interrupted", slog.Int64("cycle", cycle), slog.String("mode", string(mode)),
					slog.String("outcome", outcome), slog.Any("err", err))
			}
			return nil
		case errors.Is(err, pgsql.ErrDeposed):
			// Evicted while paused or cut off: another replica leads, and
			// the fence kept this one from writing.
			u.log.Warn("stepping down: another replica leads under a later term", slog.Int64("cycle", cycle), slog.Int64("term", ls.term))
			return nil
		case errors.Is(err, errLocked) || lockBusy(err):
			// Another session holds a lock the cycle needs (VACUUM FULL,
			// an ALTER TABLE, a row of cycle_state): nobody's fault here. A strict cycle did not
			// start and is tried again; a rolling one is not resumed, so
			// that its locked buckets do not hold up the next cycle, which
			// rewrites them.
			ls.failedCycle = cycle
			u.log.Warn("cycle cut short by a lock another session holds", slog.Int64("cycle", cycle),
				slog.String("mode", string(mode)), slog.Any("err", err))
			continue // the next boundary is due now: no pause
		case errors.Is(err, pgsql.ErrNoState):
			u.log.Error("cannot run cycles", slog.Any("err", err))
		case errors.Is(err, ErrNotStarted):
			// Another replica led for a moment too (this one's lock was
			// lost and not yet noticed): the fence held, nothing to count.
			u.log.Warn("another leader started the cycle", slog.Int64("cycle", cycle))
		case pgsql.IsConnError(err):
			u.log.Warn("cycle failed: database unreachable", slog.Int64("cycle", cycle), slog.Any("err", err))
		case pgsql.OutOfResources(err) != "":
			// Every replica would fail the same way: not counted against this leader.
			ls.failedCycle = cycle
			u.log.Error("cycle failed: database out of resources", slog.String("problem", u.cfg.Metrics.CountDatabaseError(err)),
				slog.Int64("cycle", cycle), slog.Any("err", err))
		default:
			failed++
			ls.failedCycle = cycle
			u.log.Error("cycle failed", slog.Int64("cycle", cycle), slog.Int("failed_in_a_row", failed), slog.Any("err", err))
			if failed >= maxFailedCycles {
				return err
			}
		}
		if !sleep(ctx, u.cfg.LeaderPoll) {
			return nil
		}
	}
	return nil
}

// leadState is what a leader remembers from one step to the next.
type leadState struct {
	term        int64 // the leadership term every write is fenced by
	failedCycle int64 // a cycle it failed, not resumed again
	// finished is the last cycle it ran to the end itself: if that one
	// overran, whether the next starts at once depends on by how much.
	finished int64
	// counted is the last boundary whose lateness was counted, so that a
	// cycle started again after a failure is not counted twice.
	counted time.Time
}

// step resumes the unfinished cycle, or waits for the next boundary and
// runs that cycle. It returns the cycle it ran (0 if none), its mode and
// the error it ended with.
func (u *Updater) step(ctx context.Context, ls *leadState) (int64, Mode, error) {
	st, err := pgsql.ReadState(ctx, u.cfg.Pool)
	if err != nil {
		return 0, "", err
	}
	u.cfg.Metrics.Floor.Set(float64(st.Floor))
	u.reportDamage(ctx)
	now := u.now()
	published := publishedNext(st)
	// A schedule in the future is not one any leader kept: a start that has
	// not come, or a next start further than a period away.
	future := st.StartedAt.After(now.Add(time.Second)) ||
		published.After(now.Add(max(cmp.Or(st.Period, u.cfg.Period), u.cfg.Period)+time.Second))
	if future {
		u.log.Warn("the published schedule is in the future (a leader with a fast clock, or an edit): not waiting for it",
			slog.Time("started_at", st.StartedAt), slog.Time("next_start", published), slog.Int64("cycle", st.Cycle))
	}
	if st.Cycle > 0 && st.FinishedAt == nil && st.Cycle != ls.failedCycle {
		u.log.Info("resuming cycle", slog.Int64("cycle", st.Cycle), slog.Int("buckets_left", st.BucketsTotal-st.BucketsDone))
		c := cycleOf(st)
		c.Term = ls.term
		// On the schedule it was published with, unless that schedule
		// cannot be true.
		_, err := u.run(ctx, c, true, c.Period > 0 && !future)
		if err == nil {
			ls.finished = st.Cycle
		}
		return st.Cycle, Mode(st.Mode), err
	}

	sched := partition.Schedule{Period: u.cfg.Period, Buckets: max(st.BucketsTotal, 1)}
	next := sched.NextCycle(now)
	// Replicas trust the published schedule to know how long their answers
	// stay true: never start before it says the next cycle may, even if
	// this leader's period is shorter than its predecessor's. A schedule in
	// the future is not waited for.
	if !published.IsZero() && !future {
		for next.Before(published) {
			next = next.Add(u.cfg.Period)
		}
		// A kept schedule whose cycle is due in this period but was not
		// started (the last cycle overran the boundary by a little; the
		// leader changed, or came back and finished a cut cycle, just
		// after it) is started at once, late, on that boundary's slots:
		// its first buckets, whose slots are past, go back to back until
		// it is on time. Later than period/lateStart, the boundary is
		// skipped: a cycle that late would overrun too. After this
		// leader's own cycle, the lateness is the overrun itself (past
		// the boundary it passed), so that one that overran by more than
		// a period does not start the next back to back either.
		late := now.Sub(sched.CycleStart(now))
		if st.Cycle == ls.finished && st.FinishedAt != nil {
			late = now.Sub(published)
		}
		if cur := sched.CycleStart(now); !published.After(cur) && late <= u.cfg.Period/lateStart {
			next = cur
		}
	}
	// Published before waiting, so that replicas reuse answers until the
	// boundary from the moment this leader leads; and kept, if another
	// leader published a later one meanwhile. A schedule in the future is
	// overwritten by the start of this leader's cycle instead.
	if !future {
		if next, err = pgsql.PublishNextStart(ctx, u.cfg.Pool, st.Cycle, ls.term, next); err != nil {
			return 0, "", err
		}
	}
	if !sleep(ctx, next.Sub(u.now())) {
		return 0, "", ctx.Err()
	}
	// Buckets claimed by a later cycle than the state's (the number was
	// set back by hand) would never be claimed again: number past them.
	number := max(st.Cycle, st.MaxBucketCycle) + 1
	// The cluster's mode as of the boundary: the state is read again, since
	// it may have been set while this leader waited.
	mode, err := pgsql.ClusterMode(ctx, u.cfg.Pool)
	if err != nil {
		return 0, "", err
	}
	u.observeMode(mode)
	spread := u.spread(lastBucketMax(st))
	c := u.newCycle(number, next, spread, Mode(mode))
	c.Term = ls.term
	u.countLateness(st, c, ls)
	_, err = u.run(ctx, c, false, true)
	if err == nil {
		ls.finished = c.Cycle
	}
	return c.Cycle, Mode(mode), err
}

// countLateness counts a cycle c that starts after its boundary, and the
// boundaries skipped since the last cycle st ran on the same period (or
// since the last boundary counted: a cycle tried again after a failure is
// counted once).
func (u *Updater) countLateness(st pgsql.State, c pgsql.Cycle, ls *leadState) {
	if !c.StartedAt.After(ls.counted) {
		return
	}
	from := st.StartedAt
	if ls.counted.After(from) {
		from = ls.counted
	} else if st.Cycle == 0 || st.Period != c.Period {
		from = time.Time{} // no boundary of this period to count from
	}
	ls.counted = c.StartedAt
	if late := u.now().Sub(c.StartedAt); late > lateTolerance {
		u.cfg.Metrics.CycleLateStarts.Inc()
		u.log.Info("cycle starting late, on the boundary it is due for", slog.Int64("cycle", c.Cycle),
			slog.Time("boundary", c.StartedAt), slog.Duration("late", late))
	}
	if !from.IsZero() && !from.After(c.StartedAt) {
		if skipped := int64(c.StartedAt.Sub(from)/c.Period) - 1; skipped > 0 {
			u.cfg.Metrics.CyclesSkipped.Add(float64(skipped))
			u.log.Warn("period boundaries passed without a cycle", slog.Int64("skipped", skipped),
				slog.Time("since", from), slog.Time("this_cycle", c.StartedAt))
		}
	}
}

// damageCheckTimeout bounds the leader's damage check before each cycle.
const damageCheckTimeout = 5 * time.Second

// lateTolerance is how long after its boundary a cycle may start and still
// be on time: timers and the state's read take a few milliseconds.
const lateTolerance = 50 * time.Millisecond

// publishedNext is the earliest the next cycle may start by the published
// schedule, zero if there is none.
func publishedNext(st pgsql.State) time.Time {
	if st.NextStart == nil {
		return time.Time{}
	}
	return *st.NextStart
}

// reportDamage checks the database for damage done from outside, logs each
// problem at ERROR and sets the metric.
func (u *Updater) reportDamage(ctx context.Context) {
	// Bounded: a check that hangs (a worker that drops packets on Citus)
	// must not hold the leader past its boundaries.
	ctx, cancel := context.WithTimeout(ctx, damageCheckTimeout)
	defer cancel()
	problems, err := pgsql.CheckState(ctx, u.cfg.Pool)
	if err != nil {
		return // the cycle will meet the same error and report it
	}
	u.cfg.Metrics.SetProblems(problems)
	for _, p := range problems {
		if !p.Damage() {
			u.log.Warn("database problem", slog.String("check", p.Check), slog.String("problem", p.Detail))
			continue
		}
		u.log.Error("database damaged", slog.String("check", p.Check), slog.String("problem", p.Detail))
	}
}
