package updater

import (
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/partition"
)

// rule names the rule a leader's decision follows. decide picks exactly
// one, and decide_test.go has a row for each.
type rule int

// The rules. The resume rules finish the unfinished cycle; the others start
// the next one on a boundary.
const (
	// resumeOnSlots: the published cycle is unfinished, and this leader
	// did not fail it. It is finished on the slots it was published with,
	// whenever it started.
	resumeOnSlots rule = iota + 1
	// resumeUnpaced: the unfinished cycle was run by hand (no period). Its
	// buckets go back to back.
	resumeUnpaced
	// resumeFuture: the unfinished cycle's schedule is in the future, so
	// its slots cannot be true. Its buckets go back to back.
	resumeFuture
	// startUnscheduled: no schedule is published (no leader kept one, or
	// the last cycle was run by hand). The next cycle starts on the next
	// boundary.
	startUnscheduled
	// startOnSchedule: the published next start is in this period's future.
	// The next cycle starts on the next boundary.
	startOnSchedule
	// waitPublished: the published next start is past the next boundary (a
	// leader with a longer period published it). Replicas trust it to know
	// how long their answers stay true, so the next cycle starts on the
	// first boundary at or after it.
	waitPublished
	// startLate: the cycle due on this period's boundary was not started
	// (the last cycle overran it by a little, or the leader changed just
	// after it). It starts now, late, on that boundary's slots: its first
	// buckets go back to back until it is on time.
	startLate
	// skipLate: as startLate, but later than lateStart of the period. A
	// cycle that late would overrun too, so it starts on the next boundary.
	skipLate
	// startOverFuture: the published schedule is in the future (a leader
	// with a fast clock, or an edit). It is not waited for, nor published
	// over: the next cycle starts on the next boundary and overwrites it.
	startOverFuture
)

var ruleNames = map[rule]string{
	resumeOnSlots: "resume", resumeUnpaced: "resume unpaced", resumeFuture: "resume future",
	startUnscheduled: "start unscheduled", startOnSchedule: "start on schedule", waitPublished: "wait published",
	startLate: "start late", skipLate: "skip late", startOverFuture: "start over future",
}

// String names r in test failures.
func (r rule) String() string { return ruleNames[r] }

// resumes reports whether r finishes the unfinished cycle.
func (r rule) resumes() bool { return r == resumeOnSlots || r == resumeUnpaced || r == resumeFuture }

// decision is what the leader does next. decide computes it from what it
// read, and lead carries it out: the leader decides nothing else.
type decision struct {
	Rule rule
	// Cycle is the cycle to resume, or the number of the one to start
	// (see nextNumber).
	Cycle int64
	// OnSlots is whether a resumed cycle keeps the slots it was published
	// with (resumeOnSlots only).
	OnSlots bool
	// Future is whether the published schedule is in the future: the
	// leader warns that it does not wait for it.
	Future bool

	// At is the boundary the cycle starts on.
	At time.Time
	// Spread is how much of the period the cycle's slots take.
	Spread time.Duration
	// Publish is whether At is published as the next start before the
	// leader waits for it, so that replicas reuse answers until then.
	Publish bool
	// Count is whether the start's lateness and skips are counted: false
	// for a cycle tried again on a boundary already counted.
	Count bool
	// Skipped is how many period boundaries passed without a cycle since
	// Since: the last boundary counted, or the last cycle's start on this
	// period (0 unless Count).
	Skipped int64
	Since   time.Time
}

// leadState is what a leader remembers from one step to the next.
type leadState struct {
	term        int64 // the leadership term every write is fenced by
	failedCycle int64 // a cycle it failed, not resumed again (0: none)
	// failedInARow counts the cycles it failed for a reason of its own
	// since its last one that ended well (see failed).
	failedInARow int
	// finished is the last cycle it ran to the end itself: if that one
	// overran, whether the next starts at once depends on by how much.
	finished int64
	// counted is the last boundary whose lateness was counted, so that a
	// cycle started again after a failure is not counted twice.
	counted time.Time
}

// decide is the leader's next step, given the published state st, what
// the leader remembers, the time now and the leader's period. It does no
// I/O: lead reads, waits and writes.
func decide(st pointsd.State, ls leadState, now time.Time, period time.Duration) decision {
	d := decision{Future: inFuture(st, now, period)}
	if st.Cycle > 0 && st.FinishedAt == nil && st.Cycle != ls.failedCycle {
		d.Cycle = st.Cycle
		switch {
		case d.Future:
			d.Rule = resumeFuture
		case st.Period <= 0:
			d.Rule = resumeUnpaced
		default:
			d.Rule, d.OnSlots = resumeOnSlots, true
		}
		return d
	}
	d.Cycle = nextNumber(st)
	d.Spread = spreadFor(period, lastBucketMax(st))
	sched := partition.Slots{Period: period}
	cur := sched.CycleStart(now)
	d.Rule, d.At = startOnSchedule, cur.Add(period)
	published := publishedNext(st)
	switch {
	case d.Future:
		d.Rule = startOverFuture
	case published.IsZero():
		d.Rule = startUnscheduled
	case published.After(d.At):
		d.Rule = waitPublished
		for d.At.Before(published) {
			d.At = d.At.Add(period)
		}
	case !published.After(cur):
		d.Rule = skipLate
		if startsAtOnce(lateness(st, ls, now, cur), period) {
			d.Rule, d.At = startLate, cur
		}
	}
	d.Publish = !d.Future
	d.Count, d.Skipped, d.Since = skipped(st, ls, d.At, period)
	return d
}

// nextNumber is the number of the cycle after st's: past any bucket
// claimed by a later cycle than the state's (the number was set back by
// hand), which would otherwise never be claimed again.
func nextNumber(st pointsd.State) int64 { return max(st.Cycle, st.MaxBucketCycle) + 1 }

// inFuture reports whether st's schedule is in the future, which no leader
// kept: a start that has not come, or a next start further than a period
// away (the longer of the published one and this leader's). A second of
// either is clock jitter.
func inFuture(st pointsd.State, now time.Time, period time.Duration) bool {
	return st.StartedAt.After(now.Add(time.Second)) ||
		publishedNext(st).After(now.Add(max(st.Period, period)+time.Second))
}

// lateness is how late a cycle due on the boundary cur would start now.
// After this leader's own cycle it is the overrun itself, past the boundary
// that cycle passed: one that overran by more than a period does not start
// the next back to back either.
func lateness(st pointsd.State, ls leadState, now, cur time.Time) time.Duration {
	if st.Cycle == ls.finished && st.FinishedAt != nil {
		return now.Sub(publishedNext(st))
	}
	return now.Sub(cur)
}

// lateStart is how late in its period a cycle may still start, as a part
// of the period: a leader that took over (or came back) just after a
// boundary, or whose last cycle overran it by a little, starts that
// period's cycle at once, on the boundary's slots, rather than leaving a
// whole period without one.
const lateStart = 0.5

// startsAtOnce reports whether a cycle late by late may still start: up to
// lateStart of the period late.
func startsAtOnce(late, period time.Duration) bool { return late <= part(period, lateStart) }

// skipped reports whether a start at is counted (not if a boundary at or
// after it already was), and how many period boundaries passed without a
// cycle before it, since when: since the last boundary counted, else since
// the last cycle st started on the same period.
func skipped(st pointsd.State, ls leadState, at time.Time, period time.Duration) (bool, int64, time.Time) {
	if !at.After(ls.counted) {
		return false, 0, time.Time{}
	}
	from := st.StartedAt
	switch {
	case ls.counted.After(from):
		from = ls.counted
	case st.Cycle == 0 || st.Period != period:
		return true, 0, time.Time{} // no boundary of this period to count from
	}
	if from.IsZero() || from.After(at) {
		return true, 0, time.Time{}
	}
	if n := int64(at.Sub(from)/period) - 1; n > 0 {
		return true, n, from
	}
	return true, 0, time.Time{}
}

// lateAt is how late d's start is at now, if that is counted: 0 when it is
// on time (within lateTolerance) or was counted before.
func (d decision) lateAt(now time.Time) time.Duration {
	if late := now.Sub(d.At); d.Count && late > lateTolerance {
		return late
	}
	return 0
}

// lateTolerance is how long after its boundary a cycle may start and still
// be on time: timers and the state's read take a few milliseconds.
const lateTolerance = 50 * time.Millisecond

// publishedNext is the earliest the next cycle may start by the published
// schedule, zero if there is none.
func publishedNext(st pointsd.State) time.Time {
	if st.NextStart == nil {
		return time.Time{}
	}
	return *st.NextStart
}
