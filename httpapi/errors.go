package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/pointsd/pointsd/pgsql"
)

// fail answers a request that met err, and returns the status sent (0 if
// the client went away): one place maps errors to statuses. Clients see a
// short message, never SQL; the log gets the error.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) int {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return 0 // the client went away
	}
	// What passes is 503: the database unreachable (down, restarting,
	// refusing our credentials, too slow) or out of disk or memory,
	// overload, a schema missing, damaged or not yet migrated. Anything
	// else is ours (500).
	code, msg := http.StatusServiceUnavailable, "database unavailable"
	switch {
	case errors.Is(err, errOverloaded):
		msg = "overloaded"
	case errors.Is(err, pgsql.ErrNoState), pgsql.SchemaMismatch(err):
		msg = "not ready" // an undefined table or column: migrate
	case pgsql.IsConnError(err):
	case pgsql.OutOfResources(err) != "":
		a.cfg.Metrics.CountDatabaseError(err)
		msg = "database out of resources" // disk or memory: the log names which
	default:
		code, msg = http.StatusInternalServerError, "internal error"
	}
	// Shed requests are counted by the request metric, not logged; other
	// failures are logged at most once a second with a count, since an
	// outage fails every request at once.
	if !errors.Is(err, errOverloaded) {
		a.failures.log(r.Context(), slog.String("path", r.URL.Path), slog.Int("code", code), slog.Any("err", err))
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, code, msg)
	return code
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
