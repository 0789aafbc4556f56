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
func (u *Updater) lead(ctx context.Context) error {
	failed := 0
	ls := leadState{failedCycle: -1}
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
		case errors.Is(err, pgsql.ErrNoState):
			u.log.Error("cannot run cycles", slog.Any("err", err))
		case errors.Is(err, ErrNotStarted):
			// Another replica led for a moment too (this one's lock was
			// lost and not yet noticed): the fence held, nothing to count.
			u.log.Warn("another leader started the cycle", slog.Int64("cycle", cycle))
		case pgsql.IsConnError(err):
			u.log.Warn("cycle failed: database unreachable", slog.Int64("cycle", cycle), slog.Any("err", err))
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
	failedCycle int64 // a cycle it failed, not resumed again
	started     int64 // the last cycle it started itself (a strict one may have rolled back)
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
	now := time.Now()
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
		ls.started = 0 // a cut cycle, not one that overran by itself
		u.log.Info("resuming cycle", slog.Int64("cycle", st.Cycle), slog.Int("buckets_left", st.BucketsTotal-st.BucketsDone))
		c := cycleOf(st)
		// On the schedule it was published with, unless that schedule
		// cannot be true.
		_, err := u.run(ctx, c, true, c.Period > 0 && !future)
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
		// started (the leader changed, or came back and finished a cut
		// cycle, just after the boundary) is continued late rather than
		// skipped. Not after this leader's own cycle overran: the next
		// then waits for the next boundary, and cycles never run back to
		// back.
		ranLast := st.Cycle == ls.started // and it happened: not rolled back
		if cur := sched.CycleStart(now); !ranLast && !published.After(cur) && now.Sub(cur) <= u.cfg.Period/lateStart {
			next = cur
		}
	}
	// Published before waiting, so that replicas reuse answers until the
	// boundary from the moment this leader leads; and kept, if another
	// leader published a later one meanwhile. A schedule in the future is
	// overwritten by the start of this leader's cycle instead.
	if !future {
		if next, err = pgsql.PublishNextStart(ctx, u.cfg.Pool, st.Cycle, next); err != nil {
			return 0, "", err
		}
	}
	if !sleep(ctx, time.Until(next)) {
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
	c := u.newCycle(number, next, true, Mode(mode))
	ls.started = c.Cycle
	_, err = u.run(ctx, c, false, true)
	return c.Cycle, Mode(mode), err
}

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
	problems, err := pgsql.CheckState(ctx, u.cfg.Pool)
	if err != nil {
		return // the cycle will meet the same error and report it
	}
	u.cfg.Metrics.SetProblems(problems)
	for _, p := range problems {
		u.log.Error("database damaged", slog.String("check", p.Check), slog.String("problem", p.Detail))
	}
}
