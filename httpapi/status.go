package httpapi

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/pgsql"
)

// healthz says the process is alive; it touches nothing else.
func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether this replica can answer queries: the database
// answers, its schema is the one this binary expects, and nothing in it is
// damaged (see pgsql.CheckState). A 503 says why. Problems that are not
// damage (an old snapshot) are warnings of a 200.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	type readiness struct {
		version, latest int64
		problems        []pgsql.Problem
		pooled          bool
	}
	rd, err := pgsql.RetryRead(ctx, a.cfg.Pool.Reset, func(ctx context.Context) (readiness, error) {
		var rd readiness
		var err error
		if rd.version, rd.latest, err = pgsql.SchemaVersion(ctx, a.cfg.Pool); err != nil || rd.version != rd.latest {
			return rd, err
		}
		if rd.problems, err = pgsql.CheckState(ctx, a.cfg.Pool); err != nil {
			return rd, err
		}
		rd.pooled, err = a.pooled(ctx)
		return rd, err
	})
	switch {
	case err != nil:
		a.fail(w, r, err)
	case rd.version != rd.latest:
		w.Header().Set("Retry-After", "1")
		body := map[string]any{"error": "schema not current", "version": rd.version, "want": rd.latest}
		if problem := a.leader().problem; problem != "" {
			body["leader_problem"] = problem // why serve cannot migrate, as a rule
		}
		writeJSON(w, http.StatusServiceUnavailable, body)
	case slices.ContainsFunc(rd.problems, pgsql.Problem.Damage):
		a.sawProblems(rd.problems)
		w.Header().Set("Retry-After", "10")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "database damaged", "problems": details(rd.problems)})
	default:
		a.sawProblems(rd.problems)
		body := map[string]any{"status": "ready", "version": rd.version}
		if len(rd.problems) > 0 {
			body["warnings"] = details(rd.problems)
		}
		if rd.pooled {
			body["pooler"] = pooledQueries
		}
		// Ready to answer queries, but not to lead: said here too, since
		// a cluster where no replica can lead answers while nothing moves.
		if problem := a.leader().problem; problem != "" {
			body["leader_problem"] = problem
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// pooledQueries is what /readyz and /status say when the query pool goes
// through a connection pooler.
const pooledQueries = "queries go through a connection pooler (such as PgBouncer): fine; the leader lock and LISTEN use POINTSD_DIRECT_URL"

// details are the problems' details, for an operator.
func details(problems []pgsql.Problem) []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p.Detail
	}
	return out
}

// statusBody is GET /status.
type statusBody struct {
	Mode           pointsd.Mode `json:"mode"`                     // the cluster's mode: the next cycle's
	Leader         bool         `json:"leader"`                   // whether this replica runs the updater
	LeaderProblem  string       `json:"leader_problem,omitempty"` // why it cannot lead, or last stepped down
	Pooler         string       `json:"pooler,omitempty"`         // set when queries go through a connection pooler
	LeaderTerm     int64        `json:"leader_term"`              // the current leadership term
	LeaseAge       float64      `json:"leader_lease_age_seconds"` // since the leader last renewed its lease
	Cycle          int64        `json:"cycle"`
	CycleMode      pointsd.Mode `json:"cycle_mode"` // the mode the current cycle runs in
	CycleStartedAt time.Time    `json:"cycle_started_at"`
	Floor          int          `json:"floor"`
	BucketsDone    int          `json:"buckets_done"`
	BucketsTotal   int          `json:"buckets_total"`
	LastCycle      *float64     `json:"last_cycle_seconds"` // the last finished cycle's duration
	FinishedAt     *time.Time   `json:"cycle_finished_at"`
	// Problems are what the state check finds (see /readyz), an old
	// snapshot included; empty when there is nothing.
	Problems []string `json:"problems"`
	// OldestSnapshot is the oldest snapshot a session or prepared
	// transaction holds; null when none does.
	OldestSnapshot *snapshotBody `json:"oldest_snapshot"`

	// The cache's clock and listener: the database's clock less this
	// replica's and how far the truth may be from it (null before the
	// first measurement), and whether the change listener is proven alive.
	ClockOffset      *float64 `json:"clock_offset_seconds"`
	ClockUncertainty *float64 `json:"clock_uncertainty_seconds"`
	ListenerUp       bool     `json:"listener_up"`
}

// snapshotBody is a pgsql.Snapshot in /status, with the users table's
// size beside it: what the snapshot has cost so far.
type snapshotBody struct {
	Holder     string    `json:"holder"` // "session" or "prepared transaction"
	PID        int       `json:"pid"`    // 0 for a prepared transaction
	Name       string    `json:"name"`   // the session's application_name, the prepared transaction's gid
	User       string    `json:"user"`
	ClientAddr string    `json:"client_addr"`
	State      string    `json:"state"`
	Since      time.Time `json:"since"`
	Age        float64   `json:"age_seconds"`
	// Old is whether it is past pgsql.OldSnapshotAfter, and so a problem.
	Old           bool  `json:"old"`
	TableBytes    int64 `json:"users_table_bytes"`
	ExpectedBytes int64 `json:"users_expected_bytes"` // for its users, were pruning working
}

// statusChecks are what /status reads beside the state.
type statusChecks struct {
	state    pointsd.State
	problems []pgsql.Problem
	horizon  pgsql.Horizon
	lease    pgsql.Lease
	pooled   bool
}

// status reports the cycle as every replica sees it in the database, and
// this replica's part in it.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.dbContext(r)
	defer cancel()
	sc, err := pgsql.RetryRead(ctx, a.cfg.Pool.Reset, func(ctx context.Context) (statusChecks, error) {
		var sc statusChecks
		var err error
		if sc.state, err = pgsql.ReadState(ctx, a.cfg.Pool); err != nil {
			return sc, err
		}
		if sc.problems, err = pgsql.CheckState(ctx, a.cfg.Pool); err != nil {
			return sc, err
		}
		if sc.lease, err = pgsql.ReadLease(ctx, a.cfg.Pool); err != nil {
			return sc, err
		}
		if sc.pooled, err = a.pooled(ctx); err != nil {
			return sc, err
		}
		sc.horizon, err = pgsql.ReadHorizon(ctx, a.cfg.Pool)
		return sc, err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st := sc.state
	lead := a.leader()
	body := statusBody{
		Mode: st.ClusterMode, Leader: lead.leader, LeaderProblem: lead.problem,
		LeaderTerm: sc.lease.Term, LeaseAge: sc.lease.Age.Seconds(),
		Cycle: st.Cycle, CycleMode: st.Mode, CycleStartedAt: st.StartedAt, Floor: st.Floor,
		BucketsDone: st.BucketsDone, BucketsTotal: st.BucketsTotal,
		LastCycle: st.LastDuration, FinishedAt: st.FinishedAt,
		Problems: details(sc.problems), OldestSnapshot: snapshotOf(sc.horizon),
		ListenerUp: a.live.up.Load(),
	}
	if sc.pooled {
		body.Pooler = pooledQueries
	}
	if offset, uncertainty, ok := a.clock.Offset(); ok {
		o, u := offset.Seconds(), uncertainty.Seconds()
		body.ClockOffset, body.ClockUncertainty = &o, &u
	}
	writeJSON(w, http.StatusOK, body)
}

// pooled reports whether the query pool goes through a connection pooler.
func (a *API) pooled(ctx context.Context) (bool, error) {
	conn, err := a.cfg.Pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	return pgsql.Pooled(ctx, conn.Conn())
}

// snapshotOf is the horizon's oldest snapshot for /status, nil if none.
func snapshotOf(h pgsql.Horizon) *snapshotBody {
	s := h.Oldest
	if s == nil {
		return nil
	}
	return &snapshotBody{Holder: s.Holder, PID: s.PID, Name: s.Name, User: s.User, ClientAddr: s.Client,
		State: s.State, Since: s.Since, Age: s.Age.Seconds(), Old: s.Age > pgsql.OldSnapshotAfter,
		TableBytes: h.TableBytes, ExpectedBytes: h.ExpectedBytes}
}
