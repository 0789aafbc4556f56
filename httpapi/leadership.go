package httpapi

import "github.com/pointsd/pointsd/pgsql"

// The API is its updater's Listener (see updater.Listener): cmd/pointsd
// builds the API, then hands it to the updater. httpapi does not import
// updater, and nothing is set on either after construction.

// leadership is what /status and /readyz show of this replica's updater.
type leadership struct {
	leader  bool
	problem string // why it cannot lead, "" when it can
}

// Committed tells the API that this replica's updater committed a change
// to bucket (or, for pgsql.AllBuckets, to the floor) in a cycle whose
// floor is floor. The cached answer is dropped only if it depends on that
// bucket. It makes the API an updater.Listener: other replicas' commits
// arrive by NOTIFY instead.
func (a *API) Committed(bucket, floor int) {
	a.cache.sawFloor(floor)
	a.cache.committed(bucket)
}

// LeaderChanged tells the API whether this replica leads and why it cannot
// ("" when it can), for /status and /readyz.
func (a *API) LeaderChanged(leader bool, problem string) {
	a.leadership.Store(&leadership{leader: leader, problem: problem})
}

// Checked tells the API what the leader's damage check found.
func (a *API) Checked(problems []pgsql.Problem) { a.sawProblems(problems) }

// leader returns what LeaderChanged last said.
func (a *API) leader() leadership {
	if l := a.leadership.Load(); l != nil {
		return *l
	}
	return leadership{}
}

// sawProblems records the problems a state check found: the one writer of
// pointsd_state_problems, for /readyz's checks and the leader's.
func (a *API) sawProblems(problems []pgsql.Problem) { a.cfg.Metrics.SetProblems(problems) }
