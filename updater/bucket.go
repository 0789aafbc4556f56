package updater

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/pgsql"
)

// lockRetryPause is how long a cycle waits before it tries its locked
// buckets again.
const lockRetryPause = 500 * time.Millisecond

// errLocked marks a failure to get a lock in time (lock_timeout): the lock
// is another session's, and the work is tried again later.
var errLocked = errors.New("lock held by another session")

// dispatch hands buckets to the workers, each not before its slot (zero:
// at once), and returns those draw asked to try again.
func (u *Updater) dispatch(ctx context.Context, buckets []pgsql.Bucket, draw func(pgsql.Bucket) bool, slot func(pgsql.Bucket) time.Time) []pgsql.Bucket {
	jobs := make(chan pgsql.Bucket)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var again []pgsql.Bucket
	for range u.cfg.Workers {
		wg.Go(func() {
			for b := range jobs {
				if draw(b) {
					mu.Lock()
					again = append(again, b)
					mu.Unlock()
				}
			}
		})
	}
dispatch:
	for _, b := range buckets {
		if at := slot(b); !at.IsZero() && !sleep(ctx, at.Sub(u.now())) {
			break
		}
		select {
		case jobs <- b:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(jobs)
	wg.Wait()
	slices.SortFunc(again, func(a, b pgsql.Bucket) int { return a.Index - b.Index })
	return again
}

func indexes(buckets []pgsql.Bucket) []int {
	ix := make([]int, len(buckets))
	for i, b := range buckets {
		ix[i] = b.Index
	}
	return ix
}

// drawBucket rewrites one bucket in its own transaction, retried with backoff
// for at most a period, and returns its rows and its successful
// transaction's time (0 if another updater had rewritten it already). A
// transaction in flight when ctx ends is given drainTimeout to commit or
// roll back; each attempt has a deadline. A lock it cannot get in time is
// errLocked at once, for the cycle to try the bucket again later.
func (u *Updater) drawBucket(ctx context.Context, c pointsd.Cycle, b pgsql.Bucket) (int64, time.Duration, error) {
	type out struct {
		rows int64
		took time.Duration
	}
	attempt := func() (out, error) {
		dctx, cancel := detach(ctx, drainTimeout)
		defer cancel()
		tctx, cancelAttempt := context.WithTimeout(dctx, attemptTimeout(u.cfg.Period))
		defer cancelAttempt()
		var o out
		var claimed bool
		start := time.Now()
		err := pgx.BeginFunc(tctx, u.cfg.Pool, func(tx pgx.Tx) error {
			var err error
			o.rows, claimed, err = pgsql.DrawBucket(tctx, tx, b, c)
			return err
		})
		if err != nil {
			u.cfg.Metrics.UpdateErrors.Inc()
			if pgsql.LockBusy(err) {
				return o, backoff.Permanent(fmt.Errorf("%w: %w", errLocked, err))
			}
			if permanent(err) {
				return o, backoff.Permanent(err)
			}
			return o, err
		}
		if claimed {
			o.took = time.Since(start)
			u.cfg.Metrics.BucketDuration.Observe(o.took.Seconds())
			u.committed(o.rows, b.Index, c.Floor)
			u.emit(Event{Kind: EventBucket, Cycle: c.Cycle, Bucket: b.Index})
		}
		return o, nil
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, 5*time.Second
	o, err := backoff.Retry(ctx, attempt,
		backoff.WithBackOff(bo),
		backoff.WithMaxElapsedTime(u.cfg.Period),
		backoff.WithNotify(func(err error, next time.Duration) {
			u.log.Warn("bucket failed; retrying", slog.Int64("cycle", c.Cycle),
				slog.Int("bucket", b.Index), slog.Duration("in", next), slog.Any("err", err))
		}))
	if err != nil {
		return 0, 0, fmt.Errorf("bucket %d: %w", b.Index, err)
	}
	return o.rows, o.took, nil
}

// attemptTimeout bounds one bucket transaction: a period, at least 10 s
// (a bucket takes ~30 ms at 1M users, ~1.6 s at its slowest at 10M).
func attemptTimeout(period time.Duration) time.Duration { return max(period, 10*time.Second) }

// permanent reports whether err will recur however often the bucket is
// retried: the role may not write, or the schema is not what the statement
// expects. Retrying those for a whole period would only delay the report.
// A deposed leader must stop at once.
func permanent(err error) bool {
	return errors.Is(err, pgsql.ErrDeposed) || pgsql.SchemaMismatch(err) || pgsql.ReadOnly(err)
}
