// Package httpapi is pointsd's HTTP surface: the chi router, its handlers and
// middleware. It never listens (cmd/pointsd does) and never writes SQL (it
// calls package sql).
package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pointsd/pointsd/metrics"

	pgsql "github.com/pointsd/pointsd/sql"
)

// Config is what the API needs.
type Config struct {
	Pool    *pgxpool.Pool
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// DBTimeout bounds every database call a request makes (default 2s).
	DBTimeout time.Duration
}

// API serves pointsd's endpoints.
type API struct {
	cfg Config
	mux *chi.Mux
}

// New validates cfg and builds the router.
func New(cfg Config) (*API, error) {
	if cfg.Pool == nil || cfg.Metrics == nil {
		return nil, errors.New("httpapi: Config.Pool and Config.Metrics are required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.DBTimeout = cmp.Or(cfg.DBTimeout, 2*time.Second)
	a := &API{cfg: cfg, mux: chi.NewRouter()}
	a.mux.Get("/healthz", a.healthz)
	a.mux.Get("/readyz", a.readyz)
	a.mux.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	return a, nil
}

// ServeHTTP makes the API an http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// healthz says the process is alive; it touches nothing else.
func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether this replica can answer queries: the database answers
// and its schema is the one this binary expects.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.DBTimeout)
	defer cancel()
	cur, latest, err := pgsql.SchemaVersion(ctx, a.cfg.Pool)
	switch {
	case err != nil:
		a.cfg.Logger.WarnContext(ctx, "not ready", slog.Any("err", err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database unavailable"})
	case cur != latest:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "schema not current", "version": cur, "want": latest})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "version": cur})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
