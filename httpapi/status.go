package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/pointsd/pointsd/sql"
)

// healthz says the process is alive; it touches nothing else.
func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether this replica can answer queries: the database
// answers, its schema is the one this binary expects, and nothing in it is
// damaged (see pgsql.CheckState). A 503 says why.
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
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "schema not current", "version": rd.version, "want": rd.latest})
	case len(rd.problems) > 0:
		a.cfg.Metrics.SetProblems(rd.problems)
		details := make([]string, len(rd.problems))
		for i, p := range rd.problems {
			details[i] = p.Detail
		}
		w.Header().Set("Retry-After", "10")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "database damaged", "problems": details})
	default:
		a.cfg.Metrics.SetProblems(nil)
		body := map[string]any{"status": "ready", "version": rd.version}
		if rd.pooled {
			body["pooler"] = pooledQueries
		}
		// Ready to answer queries, but not to lead: said here too, since
		// a cluster where no replica can lead answers while nothing moves.
		if _, problem := a.cfg.Replica.LeaderStatus(); problem != "" {
			body["leader_problem"] = problem
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// pooledQueries is what /readyz and /status say when the query pool goes
// through a connection pooler.
const pooledQueries = "queries go through a connection pooler (such as PgBouncer): fine; the leader lock and LISTEN use POINTSD_DIRECT_URL"

// statusBody is GET /status.
type statusBody struct {
	Mode           string     `json:"mode"`                     // the cluster's mode: the next cycle's
	Leader         bool       `json:"leader"`                   // whether this replica runs the updater
	LeaderProblem  string     `json:"leader_problem,omitempty"` // why it cannot lead, or last stepped down
	Pooler         string     `json:"pooler,omitempty"`         // set when queries go through a connection pooler
	LeaderTerm     int64      `json:"leader_term"`              // the current leadership term
	LeaseAge       float64    `json:"leader_lease_age_seconds"` // since the leader last renewed its lease
	Cycle          int64      `json:"cycle"`
	CycleMode      string     `json:"cycle_mode"` // the mode the current cycle runs in
	CycleStartedAt time.Time  `json:"cycle_started_at"`
	Floor          int        `json:"floor"`
	BucketsDone    int        `json:"buckets_done"`
	BucketsTotal   int        `json:"buckets_total"`
	LastCycle      *float64   `json:"last_cycle_seconds"` // the last finished cycle's duration
	FinishedAt     *time.Time `json:"cycle_finished_at"`
}

// status reports the cycle as every replica sees it in the database, and
// this replica's part in it.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.dbContext(r)
	defer cancel()
	type view struct {
		st     pgsql.State
		lease  pgsql.Lease
		pooled bool
	}
	v, err := pgsql.RetryRead(ctx, a.cfg.Pool.Reset, func(ctx context.Context) (view, error) {
		var v view
		var err error
		if v.st, err = pgsql.ReadState(ctx, a.cfg.Pool); err != nil {
			return v, err
		}
		if v.lease, err = pgsql.ReadLease(ctx, a.cfg.Pool); err != nil {
			return v, err
		}
		v.pooled, err = a.pooled(ctx)
		return v, err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st := v.st
	leader, problem := a.cfg.Replica.LeaderStatus()
	body := statusBody{
		Mode: st.ClusterMode, Leader: leader, LeaderProblem: problem,
		LeaderTerm: v.lease.Term, LeaseAge: v.lease.Age.Seconds(),
		Cycle: st.Cycle, CycleMode: st.Mode, CycleStartedAt: st.StartedAt, Floor: st.Floor,
		BucketsDone: st.BucketsDone, BucketsTotal: st.BucketsTotal,
		LastCycle: st.LastDuration, FinishedAt: st.FinishedAt,
	}
	if v.pooled {
		body.Pooler = pooledQueries
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
