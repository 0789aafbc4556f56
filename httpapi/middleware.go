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
// method and status, and logs it at debug level (failures are logged with
// their cause where they happen).
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
		if a.log.Enabled(r.Context(), slog.LevelDebug) {
			a.log.Debug("request", slog.String("method", r.Method),
				slog.String("route", route), slog.Int("code", ww.Status()), slog.Duration("took", took),
				slog.String("request_id", middleware.GetReqID(r.Context())))
		}
	})
}

// limit sheds requests that cannot get a database slot quickly.
func (a *API) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.acquire(r); err != nil {
			a.fail(w, r, err)
			return
		}
		defer a.release()
		next.ServeHTTP(w, r)
	})
}

// acquire takes a database slot for r, or fails with errOverloaded after
// shedAfter, or with the request's context error.
func (a *API) acquire(r *http.Request) error {
	t := time.NewTimer(shedAfter)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errOverloaded
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

func (a *API) release() { <-a.slots }
