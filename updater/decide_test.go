package updater

import (
	"testing"
	"time"

	"github.com/pointsd/pointsd"
)

// Each row is one rule of the leader's, with the state it reads and the
// decision it must return. No database: decide does no I/O.
func TestDecide(t *testing.T) {
	const period = time.Minute
	b := time.Date(2020, 7, 30, 17, 9, 0, 0, time.UTC) // a boundary
	at := func(d time.Duration) *time.Time { t := b.Add(d); return &t }
	slow := 3.0 // seconds: the last rolling cycle's slowest bucket
	// A finished cycle 7 on the leader's period, started at b, next at b+1m.
	finished := func() pointsd.State {
		return pointsd.State{Schedule: pointsd.Schedule{Cycle: 7, Period: period, Spread: 54 * time.Second, StartedAt: b, NextStart: at(period)},
			FinishedAt: at(30 * time.Second), BucketsTotal: 60, BucketsDone: 60}
	}
	unfinished := func() pointsd.State {
		st := finished()
		st.FinishedAt, st.BucketsDone = nil, 20
		return st
	}
	with := func(st pointsd.State, edit func(*pointsd.State)) pointsd.State { edit(&st); return st }
	covered := map[rule]bool{}

	for _, c := range []struct {
		name string
		st   pointsd.State
		ls   leadState
		now  time.Time
		want decision
	}{
		{
			name: "an unfinished cycle is resumed on its slots, whenever it started",
			st:   unfinished(), now: b.Add(5 * period),
			want: decision{Rule: resumeOnSlots, Cycle: 7, OnSlots: true},
		},
		{
			name: "an unfinished cycle run by hand is resumed back to back",
			st:   with(unfinished(), func(st *pointsd.State) { st.Period, st.Spread, st.NextStart = 0, 0, nil }), now: b.Add(time.Second),
			want: decision{Rule: resumeUnpaced, Cycle: 7},
		},
		{
			name: "an unfinished cycle started in the future is resumed back to back",
			st:   with(unfinished(), func(st *pointsd.State) { st.StartedAt, st.NextStart = b.Add(time.Hour), at(time.Hour+period) }), now: b,
			want: decision{Rule: resumeFuture, Cycle: 7, Future: true},
		},
		{
			name: "an unfinished cycle this leader failed is not resumed: the next starts",
			st:   unfinished(), ls: leadState{failedCycle: 7}, now: b.Add(40 * time.Second),
			want: decision{Rule: startOnSchedule, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "no schedule published: the first cycle starts on the next boundary",
			st:   pointsd.State{BucketsTotal: 60}, now: b.Add(10 * time.Second),
			want: decision{Rule: startUnscheduled, Cycle: 1, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "after a cycle run by hand (no schedule), the next starts on the next boundary",
			st:   with(finished(), func(st *pointsd.State) { st.Period, st.Spread, st.NextStart = 0, 0, nil }),
			now:  b.Add(10 * time.Second),
			want: decision{Rule: startUnscheduled, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "the kept schedule: the next cycle starts on the next boundary",
			st:   finished(), ls: leadState{finished: 7}, now: b.Add(40 * time.Second),
			want: decision{Rule: startOnSchedule, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "the spread keeps twice the last slowest bucket in reserve",
			st:   with(finished(), func(st *pointsd.State) { st.LastBucketMax = &slow }), now: b.Add(40 * time.Second),
			want: decision{Rule: startOnSchedule, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "the cycle number passes buckets claimed by a later cycle (set back by hand)",
			st:   with(finished(), func(st *pointsd.State) { st.MaxBucketCycle = 12 }), now: b.Add(40 * time.Second),
			want: decision{Rule: startOnSchedule, Cycle: 13, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "a published start past the next boundary (a longer period before) is waited for",
			st: with(finished(), func(st *pointsd.State) {
				st.Period, st.NextStart = 2*period+30*time.Second, at(2*period+30*time.Second)
			}),
			now:  b.Add(40 * time.Second),
			want: decision{Rule: waitPublished, Cycle: 8, At: b.Add(3 * period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "the cycle due on this period's boundary and not started starts now, late",
			st:   finished(), now: b.Add(period + 20*time.Second),
			want: decision{Rule: startLate, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "up to half a period late it still starts",
			st:   finished(), now: b.Add(period + 30*time.Second),
			want: decision{Rule: startLate, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "later than half a period, the boundary is skipped",
			st:   finished(), now: b.Add(period + 31*time.Second),
			want: decision{Rule: skipLate, Cycle: 8, At: b.Add(2 * period), Spread: 54 * time.Second, Publish: true, Count: true,
				Skipped: 1, Since: b},
		},
		{
			name: "boundaries passed since the last cycle are counted as skipped",
			st:   finished(), now: b.Add(3*period + 40*time.Second),
			want: decision{Rule: skipLate, Cycle: 8, At: b.Add(4 * period), Spread: 54 * time.Second, Publish: true, Count: true,
				Skipped: 3, Since: b},
		},
		{
			name: "after this leader's own cycle overran a little, the next starts at once",
			st:   with(finished(), func(st *pointsd.State) { st.FinishedAt = at(period + 10*time.Second) }),
			ls:   leadState{finished: 7}, now: b.Add(period + 10*time.Second),
			want: decision{Rule: startLate, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "after this leader's own cycle overran by more than a period, the lateness is the overrun",
			st:   with(finished(), func(st *pointsd.State) { st.FinishedAt = at(2*period + 10*time.Second) }),
			ls:   leadState{finished: 7}, now: b.Add(2*period + 10*time.Second),
			want: decision{Rule: skipLate, Cycle: 8, At: b.Add(3 * period), Spread: 54 * time.Second, Publish: true, Count: true,
				Skipped: 2, Since: b},
		},
		{
			name: "a boundary already counted is not counted again (a cycle tried again after a failure)",
			st:   finished(), ls: leadState{counted: b.Add(period)}, now: b.Add(period + 5*time.Second),
			want: decision{Rule: startLate, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Publish: true},
		},
		{
			name: "skips are counted from the last boundary counted",
			st:   finished(), ls: leadState{failedCycle: 8, counted: b.Add(period)}, now: b.Add(3*period + 40*time.Second),
			want: decision{Rule: skipLate, Cycle: 8, At: b.Add(4 * period), Spread: 54 * time.Second, Publish: true, Count: true,
				Skipped: 2, Since: b.Add(period)},
		},
		{
			name: "no skips are counted across a change of period",
			st:   with(finished(), func(st *pointsd.State) { st.Period = 30 * time.Second; st.NextStart = at(30 * time.Second) }),
			now:  b.Add(3*period + 10*time.Second),
			want: decision{Rule: startLate, Cycle: 8, At: b.Add(3 * period), Spread: 54 * time.Second, Publish: true, Count: true},
		},
		{
			name: "a start in the future is not waited for nor published: the next boundary overwrites it",
			st:   with(finished(), func(st *pointsd.State) { st.StartedAt, st.NextStart = b.Add(time.Hour), at(time.Hour+period) }),
			now:  b.Add(10 * time.Second),
			want: decision{Rule: startOverFuture, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Future: true, Count: true},
		},
		{
			name: "a next start further than a period away is in the future",
			st:   with(finished(), func(st *pointsd.State) { st.NextStart = at(10*time.Second + period + 1001*time.Millisecond) }),
			now:  b.Add(10 * time.Second),
			want: decision{Rule: startOverFuture, Cycle: 8, At: b.Add(period), Spread: 54 * time.Second, Future: true, Count: true},
		},
		{
			name: "a second past a period is clock jitter, not the future",
			st:   with(finished(), func(st *pointsd.State) { st.NextStart = at(10*time.Second + period + time.Second) }),
			now:  b.Add(10 * time.Second),
			want: decision{Rule: waitPublished, Cycle: 8, At: b.Add(2 * period), Spread: 54 * time.Second, Publish: true, Count: true,
				Skipped: 1, Since: b},
		},
	} {
		covered[c.want.Rule] = true
		t.Run(c.name, func(t *testing.T) {
			if got := decide(c.st, c.ls, c.now, period); got != c.want {
				t.Errorf("decide:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
	for r := range ruleNames {
		if !covered[r] {
			t.Errorf("no row decides %q", r)
		}
	}
}

// A start is late once it is past its boundary by more than lateTolerance,
// and only if it is counted.
func TestLateAt(t *testing.T) {
	b := time.Date(2020, 7, 30, 17, 9, 0, 0, time.UTC)
	for _, c := range []struct {
		d    decision
		now  time.Time
		want time.Duration
	}{
		{decision{At: b, Count: true}, b.Add(lateTolerance), 0},
		{decision{At: b, Count: true}, b.Add(lateTolerance + 1), lateTolerance + 1},
		{decision{At: b, Count: true}, b.Add(-time.Second), 0},
		{decision{At: b}, b.Add(time.Second), 0},
	} {
		if got := c.d.lateAt(c.now); got != c.want {
			t.Errorf("%+v at %v: late %v, want %v", c.d, c.now.Sub(b), got, c.want)
		}
	}
}

// The spread keeps a reserve of twice the last slowest bucket, at least
// 2% and at most 25% of the period, in steps of 1%; 10% before any bucket
// was timed.
func TestSpreadFor(t *testing.T) {
	for _, c := range []struct {
		last, want time.Duration
	}{
		{0, 54 * time.Second},
		{100 * time.Millisecond, 58800 * time.Millisecond},
		{3 * time.Second, 54 * time.Second},
		{3100 * time.Millisecond, 53400 * time.Millisecond},
		{time.Minute, 45 * time.Second},
	} {
		if got := spreadFor(time.Minute, c.last); got != c.want {
			t.Errorf("last bucket %v: spread %v, want %v", c.last, got, c.want)
		}
	}
}
