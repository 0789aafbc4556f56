package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointsd/pointsd/pgsql"
)

const (
	// DefaultQueryTimeEvery is how often, at most, a replica that is being
	// queried publishes its latest query time to the others.
	DefaultQueryTimeEvery = 100 * time.Millisecond
	// queryTimeMaxBackoff caps the wait between publishes that fail (the
	// database is down): the replica catches up within it once it is back.
	queryTimeMaxBackoff = time.Second
	// queryTimeTimeout bounds one publish, and the wait for the first load.
	queryTimeTimeout = time.Second
	// queryTimeRefusedEvery is how often a replica that may not write
	// query_times tries again: a GRANT takes effect within it.
	queryTimeRefusedEvery = time.Minute
	// queryTimePruneEvery is how often a publishing replica prunes the rows
	// of instances gone for a day.
	queryTimePruneEvery = time.Hour
)

// queryTimes keeps the time of the previous query for GET /: this
// replica's own, swapped by every request, and (unless it runs per
// replica) the latest the other replicas of the cluster published.
//
// No request waits for the database: a request swaps its time in, takes
// the later of the time it swapped out and the others' latest (if earlier
// than itself), and marks a publish pending. A publisher goroutine upserts
// this replica's latest time into query_times at most every `every` while
// requests come, and not at all while none do, NOTIFYing it in the same
// statement; the change listener hears the others' notifications. A
// replica reads max(at) from the table before its first answer and at every
// listener (re)connect, so the cluster's time survives restarts and
// outages.
//
// The bound: an answer counts every query this replica answered before it,
// and every query another replica answered more than `every` plus the
// delivery (the publish's round trip and the notification's trip to the
// listener, a few milliseconds on one network) before it. So it is the
// previous query's time, to the second, unless another replica answered a
// query within that bound before it; then it may be the time of a query
// before that one. It is never later than its own request. The times are
// on the database's clock (Config.Now), as each replica measures it, so a
// replica's skewed clock does not move them: only the measurement's
// uncertainty does, a millisecond or so on one network.
type queryTimes struct {
	cluster  bool
	instance string
	every    time.Duration
	db       pgsql.DBTX
	log      *slog.Logger
	failed   *sampledLog
	// publishes and publishErrors count the writes to query_times.
	publishes, publishErrors prometheus.Counter

	// last is this replica's latest query, in Unix nanoseconds; 0 none.
	last atomic.Int64
	// others is the latest query time the other replicas published, in
	// Unix nanoseconds; 0 none.
	others atomic.Int64
	// pending is set by the first request after a publish began, which
	// then kicks the publisher.
	pending atomic.Bool
	kick    chan struct{}
	// refused is set while the database refuses this replica the write.
	refused atomic.Bool

	// loaded is set once others was read from the table: until then a
	// request reads it first (loadMu serializes those, at most one try a
	// second while the database fails).
	loaded    atomic.Bool
	loadMu    sync.Mutex
	loadTried time.Time
}

// swap records a query at now (Unix nanoseconds) and returns the time of
// the previous one, 0 for none.
func (q *queryTimes) swap(now int64) int64 {
	local := q.last.Swap(now)
	if !q.cluster {
		return local
	}
	if !q.pending.Load() && !q.pending.Swap(true) {
		q.wake()
	}
	return previous(local, q.others.Load(), now)
}

// previous decides the previous query's time from this replica's previous
// query (local), the others' latest (others) and the request's time (now):
// the later of the two, but never one at or after now. A time of another
// replica after now is a query that came after this one (or a clock ahead
// of this one), not the previous; local is always before now, unless
// concurrent requests read the clock in one order and swapped in the other.
func previous(local, others, now int64) int64 {
	if others > local && others < now {
		return others
	}
	return local
}

func (q *queryTimes) wake() {
	select {
	case q.kick <- struct{}{}:
	default: // one is pending already
	}
}

// learn merges a time another replica published.
func (q *queryTimes) learn(at time.Time) {
	if at.IsZero() {
		return
	}
	t := at.UnixNano()
	for {
		cur := q.others.Load()
		if t <= cur || q.others.CompareAndSwap(cur, t) {
			return
		}
	}
}

// ensureLoaded reads the others' latest time before this replica's first
// answer, so that a replica that just started does not answer null, or a
// time older than one its predecessors answered. When the database fails,
// the request goes on with what the replica knows.
func (q *queryTimes) ensureLoaded(ctx context.Context) {
	if !q.cluster || q.loaded.Load() {
		return
	}
	q.loadMu.Lock()
	defer q.loadMu.Unlock()
	if q.loaded.Load() || time.Since(q.loadTried) < time.Second {
		return
	}
	q.loadTried = time.Now()
	ctx, cancel := context.WithTimeout(ctx, queryTimeTimeout)
	defer cancel()
	q.load(ctx)
}

// load reads the others' latest time.
func (q *queryTimes) load(ctx context.Context) {
	latest, err := pgsql.LatestQueryTime(ctx, q.db, q.instance)
	if err != nil {
		if !errors.Is(ctx.Err(), context.Canceled) {
			q.failed.log(ctx, slog.Any("err", err))
		}
		return
	}
	q.learn(latest)
	q.loaded.Store(true)
}

// HandleNotification hears another replica's publish.
func (q *queryTimes) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	instance, at, err := pgsql.ParseQueryTime(n.Payload)
	if err == nil && instance != q.instance {
		q.learn(at)
	}
	return nil
}

// HandleBacklog runs at every listener (re)connect: what was published
// while it was not listening is read from the table.
func (q *queryTimes) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeTimeout)
	defer cancel()
	q.load(ctx)
	return nil
}

// run publishes this replica's latest query time while it is queried, at
// most every q.every, until ctx ends; then it publishes what is pending.
// A failed publish is retried with a backoff of up to a second.
func (q *queryTimes) run(ctx context.Context) {
	if !q.cluster {
		return
	}
	defer q.flush()
	var began, pruned time.Time
	wait := q.every
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.kick:
		}
		if d := time.Until(began.Add(wait)); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		began = time.Now()
		if ok, refused := q.publish(ctx); !ok {
			wait = min(2*wait, queryTimeMaxBackoff)
			if refused {
				wait = queryTimeRefusedEvery
			}
			q.pending.Store(true)
			q.wake()
			continue
		}
		wait = q.every
		if time.Since(pruned) >= queryTimePruneEvery {
			pruned = time.Now()
			q.prune(ctx)
		}
	}
}

// prune deletes the rows of instances gone for a day.
func (q *queryTimes) prune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeTimeout)
	defer cancel()
	if err := pgsql.PruneQueryTimes(ctx, q.db); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		q.failed.log(ctx, slog.Any("err", err))
	}
}

// publish writes the latest query time and learns the others' latest,
// reporting whether it succeeded, and if not whether the database refused
// this replica the write.
func (q *queryTimes) publish(ctx context.Context) (ok, refused bool) {
	q.pending.Store(false) // a request from now on asks for the next publish
	at := q.last.Load()
	ctx, cancel := context.WithTimeout(ctx, queryTimeTimeout)
	defer cancel()
	latest, err := pgsql.PublishQueryTime(ctx, q.db, q.instance, time.Unix(0, at))
	if err != nil {
		q.publishErrors.Inc()
		switch {
		case pgsql.MayNotWrite(err):
			// Said once: a read-only role is a setup, not a fault.
			if !q.refused.Swap(true) {
				q.log.Warn("this replica may not write query_times: its queries do not count in the other replicas' timestamps "+
					"(grant INSERT, UPDATE, DELETE ON query_times, or run it with -query-time replica); trying again every minute", slog.Any("err", err))
			}
			return false, true
		case !errors.Is(ctx.Err(), context.Canceled):
			q.failed.log(ctx, slog.Any("err", err))
		}
		return false, false
	}
	q.refused.Store(false)
	q.publishes.Inc()
	q.learn(latest)
	return true, false
}

// flush publishes a pending time on shutdown, so that the replica's last
// queries count for the cluster after it is gone.
func (q *queryTimes) flush() {
	if q.pending.Load() && !q.refused.Load() {
		q.publish(context.Background())
	}
}
