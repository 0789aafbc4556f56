package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// fail answers a request that met err: one place maps errors to statuses.
// Clients see a short message, never SQL; the log gets the error.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	// An error the server reported is ours (500) unless it is about the
	// connection or a shutdown; anything else (refused, reset, timed out)
	// means the database is unavailable (503).
	code, msg := http.StatusServiceUnavailable, "database unavailable"
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, errOverloaded):
		msg = "overloaded"
	case errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57"):
		code, msg = http.StatusInternalServerError, "internal error"
	}
	// Shed requests are counted by the request metric, not logged one by
	// one: a flood would otherwise flood the log too.
	if !errors.Is(err, errOverloaded) {
		a.log.WarnContext(r.Context(), "request failed", slog.String("path", r.URL.Path),
			slog.Int("code", code), slog.Any("err", err))
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, code, msg)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
