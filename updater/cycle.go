package updater

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/partition"
	"github.com/pointsd/pointsd/pgsql"
)

// ErrNotStarted is returned when another updater started the cycle first.
var ErrNotStarted = errors.New("cycle already started by another updater")

// Result is what a cycle did.
type Result struct {
	Cycle int64
	Mode  pointsd.Mode
	Rows  int64
	// Took is the cycle's span, from its start to its last commit; Work is
	// the update work in it (strict: the transaction; rolling: the sum of
	// the bucket transactions). A paced rolling cycle spans most of its
	// period by design: its work says whether it is slow.
	Took, Work time.Duration
	Buckets    int // buckets rewritten (all of them in strict mode)
	// BucketP50 and BucketMax summarize the rolling buckets' transaction
	// times (zero in strict mode).
	BucketP50, BucketMax time.Duration
}

// RunCycle runs one cycle now, unpaced: in rolling mode the buckets go back
// to back. It is `pointsd cycle`; the caller makes sure no leader runs.
func (u *Updater) RunCycle(ctx context.Context) (Result, error) {
	st, err := pgsql.ReadState(ctx, u.cfg.Pool)
	if err != nil {
		return Result{}, err
	}
	mode := cmp.Or(u.cfg.Mode, st.ClusterMode)
	return u.start(ctx, u.newCycle(nextNumber(st), u.now(), 0, mode))
}

// start runs cycle c in its mode and accounts for it. A cycle with a
// period is paced on its slots; one without is run back to back.
func (u *Updater) start(ctx context.Context, c pointsd.Cycle) (Result, error) {
	if c.Mode == pointsd.Strict {
		res, err := u.runStrict(ctx, c)
		return u.account(c, res, err)
	}
	res := Result{Cycle: c.Cycle, Mode: pointsd.Rolling}
	begun := time.Now()
	started, err := pgsql.StartCycle(ctx, u.cfg.Pool, c)
	switch {
	case err != nil:
		u.cfg.Metrics.UpdateErrors.Inc()
		return u.account(c, res, err)
	case !started:
		return u.account(c, res, fmt.Errorf("rolling cycle %d: %w", c.Cycle, ErrNotStarted))
	}
	u.committed(0, pgsql.AllBuckets, c.Floor)
	u.emit(Event{Kind: EventCycleStarted, Cycle: c.Cycle})
	if c.Period > 0 {
		u.cfg.Metrics.CycleSpread.Set(c.Spread.Seconds())
	}
	res, err = u.runRolling(ctx, c, res)
	res.Took = time.Since(begun)
	return u.account(c, res, u.finished(ctx, c, res, err))
}

// resume finishes cycle c, already started: it rewrites the buckets not yet
// rewritten in c, on c's slots if it has a period. A strict cycle whose
// finish was lost has none left: it is only recorded as finished.
func (u *Updater) resume(ctx context.Context, c pointsd.Cycle) (Result, error) {
	res, err := u.runRolling(ctx, c, Result{Cycle: c.Cycle, Mode: c.Mode})
	res.Took = u.now().Sub(c.StartedAt)
	return u.account(c, res, u.finished(ctx, c, res, err))
}

// finished records that c ended, unless it ended with err or ctx ended.
func (u *Updater) finished(ctx context.Context, c pointsd.Cycle, res Result, err error) error {
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return u.finish(ctx, c, res)
}

// account accounts for cycle c's run: its metrics, its log line and its
// event. A cycle with a period is paced: its overrun and capacity count.
func (u *Updater) account(c pointsd.Cycle, res Result, err error) (Result, error) {
	if err != nil {
		u.emit(Event{Kind: EventCycleFailed, Cycle: c.Cycle, Err: err})
		return res, err
	}
	u.cfg.Metrics.CycleDuration.WithLabelValues(res.Mode.String()).Observe(res.Took.Seconds())
	u.cfg.Metrics.CycleWork.WithLabelValues(res.Mode.String()).Observe(res.Work.Seconds())
	u.cfg.Metrics.LastCycleSuccess.SetToCurrentTime()
	attrs := []any{slog.Int64("cycle", res.Cycle), slog.String("mode", res.Mode.String()),
		slog.Int64("rows", res.Rows), slog.Duration("took", res.Took), slog.Duration("work", res.Work)}
	if res.Mode == pointsd.Rolling {
		attrs = append(attrs, slog.Duration("bucket_p50", res.BucketP50), slog.Duration("bucket_max", res.BucketMax))
	}
	paced := c.Period > 0
	// Overran: ended past the next boundary (a late start's lateness
	// counts).
	over := u.now().Sub(c.StartedAt.Add(c.Period))
	switch {
	case paced && over > 0:
		u.cfg.Metrics.CycleOverruns.Inc()
		next := "the next one starts at once, on the boundary it passed"
		if !startsAtOnce(over, u.cfg.Period) {
			next = "the next one starts at the next boundary"
		}
		u.log.Warn("cycle overran its period; "+next,
			append(attrs, slog.Duration("period", u.cfg.Period), slog.Duration("over", over))...)
	case res.Work > u.cfg.SlowCycle && u.cfg.SlowCycle > 0:
		u.log.Warn("slow cycle", append(attrs, slog.Duration("slow_cycle", u.cfg.SlowCycle))...)
	default:
		u.log.Info("cycle done", attrs...)
	}
	if paced {
		u.capacity(res, c.Spread, attrs)
	}
	// Told last, so that whoever waits on it finds the metrics and the
	// log already written.
	u.emit(Event{Kind: EventCycleFinished, Cycle: c.Cycle, Result: res})
	return res, nil
}

// runStrict rewrites every user and the floor in one transaction.
func (u *Updater) runStrict(ctx context.Context, c pointsd.Cycle) (Result, error) {
	res := Result{Cycle: c.Cycle, Mode: pointsd.Strict}
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, strictTimeout(u.cfg.Period))
	defer cancel()
	err := pgx.BeginFunc(tctx, u.cfg.Pool, func(tx pgx.Tx) error {
		rows, started, err := pgsql.DrawAll(tctx, tx, c)
		if err == nil && !started {
			err = ErrNotStarted
		}
		res.Rows = rows
		return err
	})
	if err != nil {
		if !errors.Is(err, ErrNotStarted) {
			u.cfg.Metrics.UpdateErrors.Inc()
		}
		if pgsql.LockBusy(err) {
			err = fmt.Errorf("%w: %w", errLocked, err)
		}
		return res, fmt.Errorf("strict cycle %d: %w", c.Cycle, err)
	}
	res.Took = time.Since(start)
	res.Work = res.Took
	u.committed(res.Rows, pgsql.AllBuckets, c.Floor)
	u.emit(Event{Kind: EventCycleStarted, Cycle: c.Cycle})
	res.Buckets, _ = pgsql.Partitions(ctx, u.cfg.Pool)
	return res, u.finish(ctx, c, res)
}

// runRolling hands the buckets not yet rewritten in c to the workers in
// slot order, each not before its slot. It fills res with what they did.
func (u *Updater) runRolling(ctx context.Context, c pointsd.Cycle, res Result) (Result, error) {
	buckets, err := pgsql.Buckets(ctx, u.cfg.Pool)
	if err != nil {
		return res, err
	}
	// The slots c was published with: none for a cycle without a period.
	slots := partition.Slots{Period: c.Period, Buckets: len(buckets), Spread: c.Spread}

	var (
		mu     sync.Mutex
		errs   []error
		rowsOK int64
		times  []time.Duration
	)
	draw := func(b pgsql.Bucket) (again bool) {
		rows, took, err := u.drawBucket(ctx, c, b)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, errLocked):
			return true
		case err != nil:
			errs = append(errs, err)
		case took > 0:
			rowsOK += rows
			times = append(times, took)
		}
		return false
	}
	var todo []pgsql.Bucket
	for _, b := range buckets {
		if b.Cycle >= c.Cycle {
			continue // resumed: already rewritten in this cycle
		}
		if b.Partition == nil {
			continue // dropped by hand: reported by the damage check
		}
		todo = append(todo, b)
	}
	// A bucket whose partition another session keeps locked (VACUUM FULL,
	// CREATE INDEX) is put back, and tried again once the others are done,
	// until the period is over: it must not hold up the rest.
	deadline := c.StartedAt.Add(cmp.Or(c.Period, u.cfg.Period))
	for pass := 0; len(todo) > 0 && ctx.Err() == nil; pass++ {
		if pass > 0 {
			if u.now().After(deadline) {
				errs = append(errs, fmt.Errorf("%w: buckets %v still locked by another session at the end of the period", errLocked, indexes(todo)))
				break
			}
			u.log.Warn("buckets locked by another session; trying them again", slog.Int64("cycle", c.Cycle), slog.Any("buckets", indexes(todo)))
			if !sleep(ctx, lockRetryPause) {
				break
			}
		}
		todo = u.dispatch(ctx, todo, draw, func(b pgsql.Bucket) time.Time {
			if pass > 0 {
				return time.Time{} // tried again: at once
			}
			return slots.Slot(c.StartedAt, b.Index)
		})
	}

	res.Rows, res.Buckets = rowsOK, len(times)
	for _, d := range times {
		res.Work += d
	}
	if len(times) > 0 {
		slices.Sort(times)
		res.BucketP50, res.BucketMax = times[len(times)/2], times[len(times)-1]
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("rolling cycle %d: %w", c.Cycle, err)
	}
	return res, nil
}

// committed accounts for a commit in a cycle of that floor: rows
// rewritten, and tells the listener which bucket changed
// (pgsql.AllBuckets when a cycle started).
func (u *Updater) committed(rows int64, bucket, floor int) {
	u.cfg.Metrics.RowsUpdated.Add(float64(rows))
	u.cfg.Listener.Committed(bucket, floor)
}

// finish records that c ended, with its span and slowest bucket.
func (u *Updater) finish(ctx context.Context, c pointsd.Cycle, res Result) error {
	fctx, cancel := detach(ctx, drainTimeout)
	defer cancel()
	return pgsql.FinishCycle(fctx, u.cfg.Pool, c.Cycle, c.Term, res.Took, res.BucketMax)
}
