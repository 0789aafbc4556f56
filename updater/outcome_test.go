package updater

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pointsd/pointsd/pgsql"
)

// Each row is one way a step ends, with what the leader does next and what
// it remembers. No database: judge and after do no I/O.
func TestAfterAStep(t *testing.T) {
	const cycle = 9
	fresh := leadState{term: 3, failedInARow: 1, failedCycle: 4}
	covered := map[outcome]bool{}
	for _, c := range []struct {
		name    string
		err     error
		stopped bool
		ls      leadState
		want    outcome
		next    nextStep
		then    leadState
	}{
		{"a cycle that ended well clears the failures", nil, false, fresh, done, stepNow,
			leadState{term: 3, failedCycle: 4}},
		{"shutdown or lost leadership ends leading quietly", context.Canceled, true, fresh, interrupted, stopLeading, fresh},
		{"a later next start is decided again at once", fmt.Errorf("x: %w", errRescheduled), false, fresh, rescheduled, stepNow, fresh},
		{"a deposed leader stops at once", fmt.Errorf("start: %w", pgsql.ErrDeposed), false, fresh, deposed, stopLeading, fresh},
		{"a lock another session holds: not resumed, no pause, not counted",
			fmt.Errorf("bucket 2: %w", errLocked), false, fresh, locked, stepNow,
			leadState{term: 3, failedInARow: 1, failedCycle: cycle}},
		{"a lock timeout from the server is a lock too", &pgconn.PgError{Code: "55P03"}, false, fresh, locked, stepNow,
			leadState{term: 3, failedInARow: 1, failedCycle: cycle}},
		{"no state row: a pause, not counted", pgsql.ErrNoState, false, fresh, noState, stepAfterPoll, fresh},
		{"another leader started the cycle: a pause, not counted", fmt.Errorf("c: %w", ErrNotStarted), false, fresh, notStarted, stepAfterPoll, fresh},
		{"the database unreachable: a pause, not counted, resumed", &pgconn.PgError{Code: "57P01"}, false, fresh, unreachable, stepAfterPoll, fresh},
		{"the database out of disk: a pause, not counted, not resumed", &pgconn.PgError{Code: "53100"}, false, fresh, outOfResources, stepAfterPoll,
			leadState{term: 3, failedInARow: 1, failedCycle: cycle}},
		{"a failure of its own: counted, not resumed, a pause", errors.New("boom"), false, fresh, failed, stepAfterPoll,
			leadState{term: 3, failedInARow: 2, failedCycle: cycle}},
		{"the third failure in a row steps down", errors.New("boom"), false, leadState{term: 3, failedInARow: 2}, failed, stepDown,
			leadState{term: 3, failedInARow: 3, failedCycle: cycle}},
		{"a permission denied is a failure of its own", &pgconn.PgError{Code: "42501"}, false, fresh, failed, stepAfterPoll,
			leadState{term: 3, failedInARow: 2, failedCycle: cycle}},
	} {
		covered[c.want] = true
		t.Run(c.name, func(t *testing.T) {
			o := judge(c.err, c.stopped)
			if o != c.want {
				t.Fatalf("judge(%v) = %d, want %d", c.err, o, c.want)
			}
			then, next := after(c.ls, o, cycle)
			if next != c.next || then != c.then {
				t.Errorf("after: next %d, remembers %+v; want %d, %+v", next, then, c.next, c.then)
			}
		})
	}
	for o := done; o <= failed; o++ {
		if !covered[o] {
			t.Errorf("no row ends with outcome %d", o)
		}
	}
}
