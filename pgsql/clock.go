package pgsql

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Clock is the database server's clock as this process measures it. The
// leader publishes its schedule in the database's time and every replica
// compares it with the database's time, so that a skewed process neither
// starts a cycle early nor serves an answer the schedule no longer
// covers.
//
// A sync reads clock_timestamp() a few times, each bracketed by two local
// readings, and keeps the sample with the shortest round trip: the server
// read its clock somewhere inside it, so its midpoint is off by at most
// half the round trip. Between syncs, Now advances with the local
// monotonic clock from the last sample, so a step of the local wall clock
// does not move it. The uncertainty also grows by maxDrift of the time
// since the sample, the local clock's rate error.
//
// The zero value is not usable: make one with NewClock. Its methods are
// safe for concurrent use, and Now, Latest, At and Offset only read an
// atomic.
type Clock struct {
	local  func() time.Time
	sample atomic.Pointer[clockSample]
}

// clockSample is one sync's best sample.
type clockSample struct {
	local       time.Time     // the sample's local midpoint, with its monotonic reading
	mono        time.Time     // time.Now at that midpoint: At's anchor
	db          time.Time     // the database's clock at that moment
	offset      time.Duration // db less local, on the wall clocks
	uncertainty time.Duration // half the round trip, and the database's rounding
}

const (
	// ClockSyncEvery is how often Run syncs a clock by default.
	ClockSyncEvery = 5 * time.Second
	// clockSamples are the readings of one sync.
	clockSamples = 5
	// clockSyncTimeout bounds one sync: a database slow to answer keeps
	// the last measurement, whose uncertainty grows.
	clockSyncTimeout = time.Second
	// maxDrift is the rate error of a local clock that NTP disciplines:
	// 500 ppm is the most ntpd and chrony correct.
	maxDrift = 500e-6
	// dbResolution is clock_timestamp()'s resolution: a microsecond.
	dbResolution = time.Microsecond
)

// NewClock returns a clock that reads local time from local (time.Now when
// nil). Until its first Sync it reports the local time as it is.
func NewClock(local func() time.Time) *Clock {
	if local == nil {
		local = time.Now
	}
	return &Clock{local: local}
}

// Now returns the database's time now: the local time corrected by the
// measured offset. Before the first sync it is the local time. A leader
// publishes and sleeps on it: sleep target.Sub(clock.Now()) to wake at
// target in the database's time.
func (c *Clock) Now() time.Time {
	s := c.sample.Load()
	now := c.local()
	if s == nil {
		return now
	}
	return s.db.Add(now.Sub(s.local))
}

// Latest returns the latest the database's clock may read now: Now plus
// the uncertainty. ok is false before the first sync, when it returns the
// local time.
func (c *Clock) Latest() (t time.Time, ok bool) {
	s := c.sample.Load()
	now := c.local()
	if s == nil {
		return now, false
	}
	_, latest := s.at(now.Sub(s.local))
	return latest, true
}

// At is Now and Latest at t, a reading of time.Now (not of the clock's
// local source): a request that reads the time once gets both from that
// reading. Before the first sync both are t.
func (c *Clock) At(t time.Time) (now, latest time.Time, ok bool) {
	s := c.sample.Load()
	if s == nil {
		return t, t, false
	}
	now, latest = s.at(t.Sub(s.mono))
	return now, latest, true
}

// Offset returns the database's clock less this process's, and how far the
// true offset may be from it. ok is false before the first sync.
func (c *Clock) Offset() (offset, uncertainty time.Duration, ok bool) {
	s := c.sample.Load()
	if s == nil {
		return 0, 0, false
	}
	return s.offset, s.uncertaintyAfter(c.local().Sub(s.local)), true
}

// at is the database's time age after the sample, and the latest it may
// be then.
func (s *clockSample) at(age time.Duration) (now, latest time.Time) {
	now = s.db.Add(age)
	return now, now.Add(s.uncertaintyAfter(age))
}

// uncertaintyAfter is the sample's uncertainty age after it was taken.
func (s *clockSample) uncertaintyAfter(age time.Duration) time.Duration {
	return s.uncertainty + time.Duration(float64(max(age, 0))*maxDrift)
}

// Sync measures the offset to db's server, keeping the sample with the
// shortest round trip of a few. On error the last measurement stands.
func (c *Clock) Sync(ctx context.Context, db DBTX) error {
	var best *clockSample
	var rtt time.Duration
	for range clockSamples {
		t0, m0 := c.local(), time.Now()
		var dbNow time.Time
		if err := db.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&dbNow); err != nil {
			return fmt.Errorf("read the database's clock: %w", err)
		}
		t1, m1 := c.local(), time.Now()
		d := t1.Sub(t0)
		if d < 0 || (best != nil && d >= rtt) {
			continue // a local clock stepped back, or a slower sample
		}
		mid := t0.Add(d / 2)
		best, rtt = &clockSample{local: mid, mono: m0.Add(m1.Sub(m0) / 2), db: dbNow, offset: dbNow.Sub(mid),
			uncertainty: d/2 + dbResolution}, d
	}
	if best == nil {
		return errors.New("read the database's clock: the local clock went back in every sample")
	}
	c.sample.Store(best)
	return nil
}

// Run syncs the clock on db at once and then every period (ClockSyncEvery
// when not positive), each sync within a deadline, until ctx ends. A failed sync
// keeps the last measurement: its uncertainty grows with its age.
func (c *Clock) Run(ctx context.Context, db DBTX, every time.Duration) {
	if every <= 0 {
		every = ClockSyncEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, min(every, clockSyncTimeout))
		_ = c.Sync(sctx, db) // Offset and Latest show the cost of a failure
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
