package updater

import "github.com/pointsd/pointsd/pgsql"

// Listener is told what this replica's updater commits and finds, as it
// happens: the one way the updater's news leaves it. cmd/pointsd gives the
// API, which drops its cached answer on a commit and owns the gauges of
// what this replica sees (the floor, the damage found). Its methods are
// called from the updater's goroutines and must not block.
type Listener interface {
	// Committed says a change of points or floor committed in a cycle
	// whose floor is floor: bucket was rewritten, or it is
	// pgsql.AllBuckets when a cycle started (its floor, and in strict
	// mode every user).
	Committed(bucket, floor int)
	// LeaderChanged says whether this replica leads and why it cannot
	// ("" when it can), each time either changes.
	LeaderChanged(leader bool, problem string)
	// Checked gives the problems the leader's damage check found before a
	// cycle (none: nil).
	Checked(problems []pgsql.Problem)
}

// nobody is the Listener of an updater given none.
type nobody struct{}

func (nobody) Committed(int, int)         {}
func (nobody) LeaderChanged(bool, string) {}
func (nobody) Checked([]pgsql.Problem)    {}
