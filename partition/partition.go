// Package partition is the pure arithmetic of pointsd's buckets: what the
// partitions are called and when, inside a period, each bucket's slot
// begins. It knows nothing of the database or the clock; callers pass times.
package partition

import (
	"fmt"
	"time"
)

// Name is the table name of partition i of n: users_p00 … users_p59 for 60,
// zero-padded so that names sort in bucket order.
func Name(i, n int) string {
	return fmt.Sprintf("users_p%0*d", len(fmt.Sprint(n-1)), i)
}

// Slots cuts a period into one slot per bucket. Cycles start on wall-clock
// multiples of the period (a one-minute period starts at :00), so replicas
// agree on them without talking, and a new leader continues where the old
// one left off.
type Slots struct {
	Period  time.Duration
	Buckets int
	// Spread is the part of the period the slots are spread over, from its
	// start: the rest is left for the last buckets' own work, so that a
	// cycle ends before the next boundary. Zero (or more than Period) means
	// the whole period.
	Spread time.Duration
}

// CycleStart is the start of the cycle t falls in: t rounded down to a
// multiple of the period, counted from the Unix epoch in UTC.
func (s Slots) CycleStart(t time.Time) time.Time {
	ns := t.UnixNano()
	p := int64(s.Period)
	start := ns - ns%p
	if ns < 0 && ns%p != 0 {
		start -= p
	}
	return time.Unix(0, start).In(t.Location())
}

// NextCycle is the start of the first cycle strictly after t.
func (s Slots) NextCycle(t time.Time) time.Time {
	return s.CycleStart(t).Add(s.Period)
}

// Slot is when bucket i may start in the cycle that starts at start:
// start + i·spread/buckets. The buckets are spread evenly across the
// spread, and while it stays the same, bucket i is rewritten one period
// after its previous rewrite. Slot is zero when the cycle has no slots (no
// period: a cycle run by hand, or no buckets): its buckets may be rewritten
// at any moment. The leader dispatches on it and the caches trust it, so
// both call this one function.
func (s Slots) Slot(start time.Time, i int) time.Time {
	if s.Period <= 0 || s.Buckets <= 0 {
		return time.Time{}
	}
	spread := s.Period
	if s.Spread > 0 && s.Spread < s.Period {
		spread = s.Spread
	}
	return start.Add(time.Duration(int64(spread) * int64(i) / int64(s.Buckets)))
}
