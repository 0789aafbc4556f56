package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// shedAfter is how long a request waits for a database slot before it is
// turned away: a flood gets fast 503s, not a queue without end.
const shedAfter = 100 * time.Millisecond

var errOverloaded = errors.New("overloaded")

// instrument times each request by route pattern (never the raw path),
// method and status, and logs it at debug level with its request id
// (failures are logged with their cause where they happen).
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
		method := methodLabel(r.Method)
		a.observers.get(route, method, ww.Status()).Observe(took.Seconds())
		if a.log.Enabled(r.Context(), slog.LevelDebug) {
			a.log.Debug("request", slog.String("method", method),
				slog.String("route", route), slog.Int("code", ww.Status()), slog.Duration("took", took),
				slog.String("request_id", middleware.GetReqID(r.Context())))
		}
	})
}

// observers keeps the request histogram's series by label values, so that
// a request finds its own with one map read instead of hashing its labels
// and formatting its status code. The labels are bounded (route patterns,
// methodLabel, status codes), and so is the map.
type observers struct {
	vec *prometheus.HistogramVec
	m   sync.Map // labels → prometheus.Observer
}

type labels struct {
	route, method string
	code          int
}

func (o *observers) get(route, method string, code int) prometheus.Observer {
	k := labels{route, method, code}
	if h, ok := o.m.Load(k); ok {
		return h.(prometheus.Observer)
	}
	h, _ := o.m.LoadOrStore(k, o.vec.WithLabelValues(route, method, strconv.Itoa(code)))
	return h.(prometheus.Observer)
}

// methodLabel is r.Method if it is one of HTTP's registered methods, else
// "OTHER". The method is the client's to choose (any token is valid HTTP),
// and every distinct label value is a new series kept for the life of the
// process: a raw method label lets anyone who can reach the port grow
// memory without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
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
