package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	pgsql "github.com/pointsd/pointsd/sql"
)

// healthz says the process is alive; it touches nothing else.
func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether this replica can answer queries: the database answers
// and its schema is the one this binary expects.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.dbContext(r)
	defer cancel()
	cur, latest, err := pgsql.SchemaVersion(ctx, a.cfg.Pool)
	switch {
	case err != nil:
		a.log.WarnContext(ctx, "not ready", slog.Any("err", err))
		writeError(w, http.StatusServiceUnavailable, "database unavailable")
	case cur != latest:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "schema not current", "version": cur, "want": latest})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "version": cur})
	}
}

// statusBody is GET /status.
type statusBody struct {
	Mode           string     `json:"mode"`   // this replica's configured mode
	Leader         bool       `json:"leader"` // whether this replica runs the updater
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
	st, err := pgsql.ReadState(ctx, a.cfg.Pool)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	u := a.cfg.Updater.Status()
	writeJSON(w, http.StatusOK, statusBody{
		Mode: string(u.Mode), Leader: u.Leader,
		Cycle: st.Cycle, CycleMode: st.Mode, CycleStartedAt: st.StartedAt, Floor: st.Floor,
		BucketsDone: st.BucketsDone, BucketsTotal: st.BucketsTotal,
		LastCycle: st.LastDuration, FinishedAt: st.FinishedAt,
	})
}
