package updater

import (
	"errors"

	"github.com/pointsd/pointsd/pgsql"
)

// outcome names how a leader's step ended, as judge reads its error. after
// says what the leader does next; outcome_test.go has a row for each.
type outcome int

// The outcomes.
const (
	// done: the step ran its cycle to the end.
	done outcome = iota + 1
	// interrupted: the leader's context ended (shutdown, or leadership
	// lost). Buckets committed stay; the next leader rewrites the rest.
	interrupted
	// rescheduled: another leader published a later next start meanwhile.
	// The leader decides again at once.
	rescheduled
	// deposed: another replica leads under a later term (this one was
	// evicted while paused or cut off), and the fence kept it from writing.
	deposed
	// locked: another session holds a lock the cycle needs (VACUUM FULL, an
	// ALTER TABLE, a row of cycle_state): nobody's fault here. A strict
	// cycle did not start and is tried again. A rolling one is not resumed,
	// so that its locked buckets do not hold up the next cycle, which
	// rewrites them. The next boundary is due now: no pause.
	locked
	// noState: the cycle_state row is missing. Nothing runs until it is back.
	noState
	// notStarted: another replica led for a moment too (this one's lock was
	// lost and not yet noticed). The fence held: nothing to count.
	notStarted
	// unreachable: the database could not be reached. Not counted.
	unreachable
	// outOfResources: the database is out of disk or memory. Every replica
	// would fail the same way, so it is not counted against this leader,
	// and the cycle is not resumed.
	outOfResources
	// failed: the cycle failed for a reason of this leader's own. It is not
	// resumed, and maxFailedCycles of them in a row make the leader step
	// down, so that a replica that cannot do the work does not keep the
	// lock from one that can.
	failed
)

// judge names how a step that returned err ended. stopped is whether the
// leader's context has ended.
func judge(err error, stopped bool) outcome {
	switch {
	case err == nil:
		return done
	case stopped:
		return interrupted
	case errors.Is(err, errRescheduled):
		return rescheduled
	case errors.Is(err, pgsql.ErrDeposed):
		return deposed
	case errors.Is(err, errLocked) || pgsql.LockBusy(err):
		return locked
	case errors.Is(err, pgsql.ErrNoState):
		return noState
	case errors.Is(err, ErrNotStarted):
		return notStarted
	case pgsql.IsConnError(err):
		return unreachable
	case pgsql.OutOfResources(err) != "":
		return outOfResources
	}
	return failed
}

// nextStep is what the leader does after a step.
type nextStep int

// The nexts.
const (
	// stepNow: the next step at once.
	stepNow nextStep = iota + 1
	// stepAfterPoll: the next step after a leader poll.
	stepAfterPoll
	// stopLeading: leading is over, with nothing to report.
	stopLeading
	// stepDown: leading is over, with the last error to report.
	stepDown
)

// after is what the leader does after a step on cycle ended with o, and
// what it remembers of it.
func after(ls leadState, o outcome, cycle int64) (leadState, nextStep) {
	switch o {
	case done:
		ls.failedInARow = 0
		return ls, stepNow
	case interrupted, deposed:
		return ls, stopLeading
	case rescheduled:
		return ls, stepNow
	case locked:
		ls.failedCycle = cycle
		return ls, stepNow
	case outOfResources:
		ls.failedCycle = cycle
	case failed:
		ls.failedCycle = cycle
		ls.failedInARow++
		if ls.failedInARow >= maxFailedCycles {
			return ls, stepDown
		}
	}
	return ls, stepAfterPoll
}
