package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// shedAfter is how long a request waits for a database slot before it is
// turned away: a flood gets fast 503s, not a queue without end.
const shedAfter = 100 * time.Millisecond

var errOverloaded = errors.New("overloaded")

// instrument times each request by route pattern (never the raw path),
// method and status, and logs it: failures at warn, the rest at debug.
func (a *API) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		took := time.Since(start)
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		a.cfg.Metrics.HTTPDuration.WithLabelValues(route, r.Method, strconv.Itoa(ww.Status())).Observe(took.Seconds())
		level := slog.LevelDebug
		if ww.Status() >= 500 {
			level = slog.LevelWarn
		}
		if a.log.Enabled(r.Context(), level) {
			a.log.Log(r.Context(), level, "request", slog.String("method", r.Method),
				slog.String("route", route), slog.Int("code", ww.Status()), slog.Duration("took", took),
				slog.String("request_id", middleware.GetReqID(r.Context())))
		}
	})
}

// limit sheds requests that cannot get a database slot quickly.
func (a *API) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.acquire(r) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "overloaded")
			return
		}
		defer a.release()
		next.ServeHTTP(w, r)
	})
}

func (a *API) acquire(r *http.Request) bool {
	t := time.NewTimer(shedAfter)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-r.Context().Done():
		return false
	}
}

func (a *API) release() { <-a.slots }
