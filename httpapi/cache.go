package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/partition"
	"github.com/pointsd/pointsd/pgsql"
)

// The margins of the reuse window (see cache and reuse).
const (
	// skewMargin is taken off the schedule's window on top of the
	// clock's measured uncertainty: it covers the leader's own error in
	// reading the database's clock (its uncertainty, under a millisecond
	// on one network), the microsecond rounding of stored times, and a
	// leader that still sleeps on its own NTP-disciplined clock.
	skewMargin = 20 * time.Millisecond
	// unsyncedMargin is taken off instead while the clock has not been
	// measured: the local clock is then compared with the schedule as it
	// is, as before pointsd measured clocks.
	unsyncedMargin = 100 * time.Millisecond
	// unheardMaxAge is how long after its read began an answer may be
	// reused while the listener is not proven alive: a commit it missed
	// shows within this.
	unheardMaxAge = 100 * time.Millisecond
)

// answer is a result of the query, ready to send.
type answer struct {
	users []byte         // the JSON array of users
	until time.Time      // by the schedule, in the database's time, it holds before this; zero: not reusable
	read  time.Time      // when its read began, on the local clock
	fresh time.Time      // maxAge after read: then it is read again
	gen   uint64         // the invalidation generation it was read in
	ans   pointsd.Answer // what it was read from
}

// cache keeps the current answer in memory so that GET / needs no database
// round trip in steady state.
//
// An answer is reused only while it is known to be true. The leader
// publishes its schedule with every cycle and never departs from it: the
// floor changes only when a cycle starts, at or after the boundary
// started_at + period; a bucket is rewritten once per cycle and never
// before its slot. So an answer whose users sit in buckets already
// rewritten in the current cycle holds until the next boundary, and one
// with a user in a pending bucket holds until that bucket's slot. Every
// replica can tell that alone, without hearing from the leader in time.
// Commits that touch what an answer depends on also invalidate it
// (in-process on the leader, by LISTEN/NOTIFY elsewhere) so that a change is
// picked up at once. As a safety net under both, an answer older than
// maxAge is read again: in the background, while requests keep getting
// it, if the schedule says it still holds; otherwise before answering.
//
// The schedule's times are the database's (the leader publishes them on
// a pgsql.Clock), so the window is decided on the database's clock as
// this process measures it, less the measurement's uncertainty, and the
// listener must be proven alive for the window to outlast unheardMaxAge
// (see reuse for the exact rule).
//
// Refreshes are single-flight, and a request only ever waits for a refresh
// that began after it arrived, so its answer is read after the request
// started: never a stale one.
type cache struct {
	db      pgsql.DBTX
	reset   func() // drops the pool's connections before a retried read
	maxAge  time.Duration
	timeout time.Duration
	floor   prometheus.Gauge // pointsd_qualifying_floor, written by sawFloor only
	clock   *pgsql.Clock     // the database's clock, which the schedule is on

	gen     atomic.Uint64
	current atomic.Pointer[answer]
	// heardUntil is the local time until which the listener is proven to
	// have delivered every commit's NOTIFY (see liveness); nil: not proven.
	heardUntil atomic.Pointer[time.Time]

	mu      sync.Mutex
	running *flight // the refresh in progress
	queued  *flight // the refresh to run after it, which new arrivals join
}

type flight struct {
	done chan struct{}
	a    *answer
	err  error
}

// sawFloor records the floor this replica last saw, read with an answer or
// told by its leader's commit: the one writer of the floor gauge.
func (c *cache) sawFloor(floor int) {
	if c.floor != nil {
		c.floor.Set(float64(floor))
	}
}

// invalidate makes the next request read afresh.
func (c *cache) invalidate() { c.gen.Add(1) }

// committed invalidates the answer if a commit to bucket could change it:
// the floor changed, a user of the answer lives in that bucket, or the
// answer is short of two users and the bucket may bring one. Other buckets'
// rewrites leave it true. (An answer being read meanwhile is covered by the
// schedule: it cannot outlive the slot of a pending bucket it relies on.)
func (c *cache) committed(bucket int) {
	a := c.current.Load()
	if a == nil || bucket < 0 || (len(a.ans.Users) < 2 && !pgsql.NoneQualify(a.ans.Floor)) ||
		slices.ContainsFunc(a.ans.Users, func(u pointsd.User) bool { return u.Bucket == bucket }) {
		c.invalidate()
	}
}

// hit returns the current answer if it may be reused at local (a reading
// of time.Now), when the database's clock reads at most latest (synced:
// measured), starting a background re-read when it is past maxAge; nil
// otherwise. It is the hot path of GET /: no context, no timer, no lock,
// only atomics.
func (c *cache) hit(local, latest time.Time, synced bool) *answer {
	a := c.current.Load()
	if a == nil || a.gen != c.gen.Load() {
		return nil
	}
	at := moment{local: local, db: latest, synced: synced}
	if h := c.heardUntil.Load(); h != nil {
		at.heardUntil = *h
	}
	switch reuse(a, at) {
	case serve:
		return a
	case serveAndRevalidate:
		c.revalidate()
		return a
	default:
		return nil
	}
}

// moment is what the reuse rule reads of the clocks at one instant.
type moment struct {
	local      time.Time // this process's clock, for ages
	db         time.Time // the latest the database's clock may read (pgsql.Clock.At)
	synced     bool      // db was measured; if not, it is the local clock
	heardUntil time.Time // local: the listener is proven alive before this
}

// verdict is what the reuse rule decides for one request.
type verdict int

const (
	readAgain          verdict = iota // the request waits for a fresh read
	serve                             // the answer is served as it is
	serveAndRevalidate                // served while a read runs in the background
)

// reuse is the cache's rule. An answer is reused only while both hold:
//
//   - the schedule: the database's clock, at its latest, plus skewMargin
//     (unsyncedMargin before the clock's first measurement) is before
//     until;
//   - the listener: it is proven alive (at.local before heardUntil), or
//     the answer's read began less than unheardMaxAge ago.
//
// Past maxAge after its read it is read again in the background.
func reuse(a *answer, at moment) verdict {
	margin := unsyncedMargin
	if at.synced {
		margin = skewMargin
	}
	if !at.db.Add(margin).Before(a.until) {
		return readAgain
	}
	if !at.local.Before(at.heardUntil) && !at.local.Before(a.read.Add(unheardMaxAge)) {
		return readAgain
	}
	if at.local.Before(a.fresh) {
		return serve
	}
	return serveAndRevalidate
}

// get returns an answer that is true at some moment after the call began.
func (c *cache) get(ctx context.Context) (*answer, error) {
	now := time.Now()
	_, latest, synced := c.clock.At(now)
	if a := c.hit(now, latest, synced); a != nil {
		return a, nil
	}
	c.mu.Lock()
	var f *flight
	switch {
	case c.running == nil:
		f = &flight{done: make(chan struct{})}
		c.running = f
		go c.refresh(f) //nolint:gosec // G118: a refresh serves every waiting request, so it outlives the one that started it
	case c.queued == nil:
		f = &flight{done: make(chan struct{})}
		c.queued = f
	default:
		f = c.queued
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.a, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// revalidate starts a refresh unless one is running, without waiting for
// it.
func (c *cache) revalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running == nil {
		c.running = &flight{done: make(chan struct{})}
		go c.refresh(c.running)
	}
}

// refresh runs flight f, then the flight queued behind it, if any.
func (c *cache) refresh(f *flight) {
	gen, start := c.gen.Load(), time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	f.a, f.err = c.read(ctx)
	cancel()
	if f.err == nil {
		f.a.gen = gen
		f.a.until = stableUntil(f.a.ans)
		f.a.read, f.a.fresh = start, start.Add(c.maxAge)
		c.current.Store(f.a)
		c.sawFloor(f.a.ans.Floor)
	}
	c.mu.Lock()
	c.running, c.queued = c.queued, nil
	if c.running != nil {
		go c.refresh(c.running)
	}
	c.mu.Unlock()
	close(f.done)
}

// read reads an answer, retried once on a dropped connection. It runs in
// a goroutine of its own, beyond the reach of the HTTP server's recovery: a
// panic becomes the requests' error rather than the end of the process.
func (c *cache) read(ctx context.Context) (a *answer, err error) {
	defer func() {
		if r := recover(); r != nil {
			a, err = nil, fmt.Errorf("read an answer: panic: %v", r)
		}
	}()
	return pgsql.RetryRead(ctx, c.reset, func(ctx context.Context) (*answer, error) { return read(ctx, c.db) })
}

// read queries an answer and renders its users.
func read(ctx context.Context, db pgsql.DBTX) (*answer, error) {
	a, err := pgsql.QueryAnswer(ctx, db)
	if err != nil {
		return nil, err
	}
	users := a.Users
	if users == nil {
		users = []pointsd.User{} // always an array
	}
	b, err := json.Marshal(users) // the ids and points: see pointsd.User
	if err != nil {
		return nil, err
	}
	return &answer{users: b, ans: a}, nil
}

// stableUntil is when a may first stop being true, by the published
// schedule (see cache), in the database's time. Zero when no leader keeps
// a schedule, or when a pending bucket the answer depends on has no slot
// (a cycle run by hand).
func stableUntil(a pointsd.Answer) time.Time {
	if a.NextStart == nil {
		return time.Time{}
	}
	until := *a.NextStart // the floor, and every rewritten bucket
	slots := partition.Slots{Period: a.Period, Buckets: a.Buckets, Spread: a.Spread}
	slot := func(bucket int) time.Time { return slots.Slot(a.StartedAt, bucket) }
	if !pgsql.NoneQualify(a.Floor) {
		for _, u := range a.Users {
			if u.Bucket == pointsd.NoBucket {
				return time.Time{} // outside the schedule: may change any moment
			}
			if u.BucketCycle < a.Cycle {
				until = minTime(until, slot(u.Bucket))
			}
		}
		// Short of two users, a pending bucket's rewrite may bring one.
		if len(a.Users) < 2 && a.FirstPending != pointsd.NonePending {
			until = minTime(until, slot(a.FirstPending))
		}
	}
	return until
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
