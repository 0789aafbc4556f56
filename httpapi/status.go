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
	}
	rd, err := pgsql.RetryRead(ctx, a.cfg.Pool.Reset, func(ctx context.Context) (readiness, error) {
		var rd readiness
		var err error
		if rd.version, rd.latest, err = pgsql.SchemaVersion(ctx, a.cfg.Pool); err != nil || rd.version != rd.latest {
			return rd, err
		}
		rd.problems, err = pgsql.CheckState(ctx, a.cfg.Pool)
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
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "version": rd.version})
	}
}

// statusBody is GET /status.
type statusBody struct {
	Mode           string     `json:"mode"`                     // the cluster's mode: the next cycle's
	Leader         bool       `json:"leader"`                   // whether this replica runs the updater
	LeaderProblem  string     `json:"leader_problem,omitempty"` // why it cannot lead, or last stepped down
	Cycle          int64      `json:"cycle"`
	CycleMode      string     `json:"cycle_mode"` // the mode the current cycle runs in
	CycleStartedAt time.Time  `json:"cycle_started_at"`
	Floor          int        `json:"floor"`
	BucketsDone    int        `json:"buckets_done"`
	BucketsTotal   int        `json:"buckets_total"`
	LastCycle      *float64   `json:"last_cycle_seconds"` // the last finished cycle's duration
	FinishedAt     *time.Time `json:"cycle_finished_at"`

	// The cache's clock and listener: the database's clock less this
	// replica's and how far the truth may be from it (null before the
	// first measurement), and whether the change listener is proven alive.
	ClockOffset      *float64 `json:"clock_offset_seconds"`
	ClockUncertainty *float64 `json:"clock_uncertainty_seconds"`
	ListenerUp       bool     `json:"listener_up"`
}

// status reports the cycle as every replica sees it in the database, and
// this replica's part in it.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.dbContext(r)
	defer cancel()
	st, err := pgsql.RetryRead(ctx, a.cfg.Pool.Reset, func(ctx context.Context) (pgsql.State, error) {
		return pgsql.ReadState(ctx, a.cfg.Pool)
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	leader, problem := a.cfg.Replica.LeaderStatus()
	body := statusBody{
		Mode: st.ClusterMode, Leader: leader, LeaderProblem: problem,
		Cycle: st.Cycle, CycleMode: st.Mode, CycleStartedAt: st.StartedAt, Floor: st.Floor,
		BucketsDone: st.BucketsDone, BucketsTotal: st.BucketsTotal,
		LastCycle: st.LastDuration, FinishedAt: st.FinishedAt,
		ListenerUp: a.live.up.Load(),
	}
	if offset, uncertainty, ok := a.clock.Offset(); ok {
		o, u := offset.Seconds(), uncertainty.Seconds()
		body.ClockOffset, body.ClockUncertainty = &o, &u
	}
	writeJSON(w, http.StatusOK, body)
}
