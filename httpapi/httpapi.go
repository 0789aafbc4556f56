// Package httpapi is pointsd's HTTP surface: the chi router, its handlers,
// middleware and the in-memory answer cache. It never listens (cmd/pointsd
// does) and never writes SQL (it calls package pgsql). It does not know
// the updater: the updater tells it of commits and leadership as its
// Listener (cmd/pointsd wires them).
package httpapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
)

// Config is what the API needs. Zero durations take the defaults.
type Config struct {
	Pool *pgxpool.Pool // the query pool, which may go through a transaction pooler
	// Direct is a pool on PostgreSQL itself, whose settings LISTEN
	// connects with: a transaction pooler would not deliver notifications.
	// Nil: Pool's.
	Direct  *pgxpool.Pool
	Metrics *metrics.Metrics
	Logger  *slog.Logger

	// DBTimeout bounds every database call a request makes (default 2s).
	DBTimeout time.Duration
	// NoCache makes every GET / read the database (one round trip each).
	NoCache bool
	// CacheMaxAge caps how long an answer is reused (default 1s), a
	// safety net under the schedule and the invalidations.
	CacheMaxAge time.Duration
	// Now is the clock of the previous-query times. The default is
	// Clock's time, the database's, at the request's one reading of the
	// local clock: replicas whose own clocks disagree still stamp their
	// queries on one clock.
	Now func() time.Time
	// ReplicaQueryTime makes GET /'s timestamp this replica's previous
	// query, as before the cluster's (see queryTimes): no writes at all,
	// for a role that may only read. The default is the cluster's.
	ReplicaQueryTime bool
	// Instance names this replica's row in query_times (the updater's
	// instance, as its sessions are named); empty draws one.
	Instance string
	// QueryTimeEvery is how often, at most, this replica publishes its
	// latest query time while queried (default DefaultQueryTimeEvery).
	QueryTimeEvery time.Duration
	// Clock is the database's clock, on which the cache decides how long
	// an answer holds (the schedule is in the database's time). Give the
	// process's one clock, kept synced by its owner; nil makes the API a
	// clock of its own, which Listen keeps synced on Pool. Either way New
	// registers it in Metrics (pointsd_clock_offset_seconds).
	Clock *pgsql.Clock
}

// API serves pointsd's endpoints.
type API struct {
	cfg   Config
	log   *slog.Logger
	mux   *chi.Mux
	cache *cache
	// times holds the previous query's time: this replica's and the
	// cluster's.
	times *queryTimes
	// slots bounds the requests using the query pool at once: beyond it
	// they are shed with a fast 503 rather than queued without limit.
	slots chan struct{}
	// failures logs failed requests, at most one line a second.
	failures *sampledLog
	// draining is set on shutdown: /readyz answers 503 from then on.
	draining atomic.Bool
	// observers are the request histogram's series; rootOK is GET /'s
	// 200s', the one nearly every request observes.
	observers observers
	rootOK    prometheus.Observer
	// stamps formats the previous query's time.
	stamps stamps
	// fastRoot sends GET / past the router (see ServeHTTP).
	fastRoot bool
	// clock is Config.Clock or, when nil, the API's own (ownClock),
	// synced by Listen.
	clock    *pgsql.Clock
	ownClock bool
	// live proves the change listener alive (see liveness), and
	// connectListener opens its connection.
	live            *liveness
	connectListener func(context.Context) (*pgx.Conn, error)
	// leadership is what this replica's updater last said of its part in
	// the cluster (see LeaderChanged); nil: not leading, no problem.
	leadership atomic.Pointer[leadership]
}

// New validates cfg and builds the router.
func New(cfg Config) (*API, error) {
	if cfg.Pool == nil || cfg.Metrics == nil {
		return nil, errors.New("httpapi: Config.Pool and Metrics are required")
	}
	if cfg.DBTimeout < 0 || cfg.CacheMaxAge < 0 || cfg.QueryTimeEvery < 0 {
		return nil, errors.New("httpapi: durations must not be negative")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.DBTimeout = cmp.Or(cfg.DBTimeout, 2*time.Second)
	cfg.CacheMaxAge = cmp.Or(cfg.CacheMaxAge, time.Second)
	cfg.QueryTimeEvery = cmp.Or(cfg.QueryTimeEvery, DefaultQueryTimeEvery)
	cfg.Instance = cmp.Or(cfg.Instance, randomID())
	clock, ownClock := cfg.Clock, cfg.Clock == nil
	if ownClock {
		clock = pgsql.NewClock(nil)
	}
	if err := cfg.Metrics.RegisterClock(clock); err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	a := &API{
		cfg: cfg,
		log: cfg.Logger,
		mux: chi.NewRouter(),
		cache: &cache{
			db: cfg.Pool, reset: cfg.Pool.Reset, maxAge: cfg.CacheMaxAge, timeout: cfg.DBTimeout,
			floor: cfg.Metrics.Floor,
			clock: clock,
		},
		clock: clock, ownClock: ownClock, connectListener: connectListener(cmp.Or(cfg.Direct, cfg.Pool), cfg.Instance),
		slots:     make(chan struct{}, max(cfg.Pool.Config().MaxConns-1, 1)),
		failures:  &sampledLog{logger: cfg.Logger, level: slog.LevelWarn, msg: "requests failed", interval: time.Second},
		observers: observers{vec: cfg.Metrics.HTTPDuration},
	}
	a.rootOK = a.observers.get("/", http.MethodGet, http.StatusOK)
	a.times = &queryTimes{cluster: !cfg.ReplicaQueryTime, instance: cfg.Instance, every: cfg.QueryTimeEvery, db: cfg.Pool,
		log: cfg.Logger, kick: make(chan struct{}, 1),
		failed:    &sampledLog{logger: cfg.Logger, level: slog.LevelWarn, msg: "query time exchange", interval: 10 * time.Second},
		publishes: cfg.Metrics.QueryTimePublishes, publishErrors: cfg.Metrics.QueryTimePublishErrors}
	a.times.loaded.Store(cfg.ReplicaQueryTime) // nothing to load
	a.live = newLiveness(a.cache, cfg.Metrics.ListenerUp, cfg.Logger)
	// Request ids (the client's X-Request-Id, or one of ours) go to the
	// debug log of every request; at other levels nothing shows them, so
	// they are not made. GetHead answers HEAD on every GET route (net/http
	// drops the body).
	a.fastRoot = !cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	if !a.fastRoot {
		a.mux.Use(middleware.RequestID)
	}
	a.mux.Use(a.instrument, middleware.GetHead)
	a.mux.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	a.mux.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD") // every route is GET (and so HEAD) only
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	})
	a.mux.Get("/", a.query)
	a.mux.Get("/healthz", a.healthz)
	a.mux.With(a.limit).Get("/readyz", a.readyz)
	a.mux.With(a.limit).Get("/status", a.status)
	a.mux.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	return a, nil
}

// ServeHTTP makes the API an http.Handler. GET and HEAD / go straight to
// serveRoot unless every request is logged at debug level (with a request
// id, which only the router's middleware gives).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.fastRoot && r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		a.serveRoot(w, r)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// Drain makes /readyz answer 503 from now on: the server is shutting down,
// and load balancers should stop sending it requests while it still serves
// them.
func (a *API) Drain() { a.draining.Store(true) }

// PublishQueryTimes publishes this replica's latest query time to the
// cluster while it is queried, until ctx ends, and then once more if a
// query is not yet published. Run it until the server has drained.
func (a *API) PublishQueryTimes(ctx context.Context) { a.times.run(ctx) }

// dbContext bounds a request's database calls.
func (a *API) dbContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.cfg.DBTimeout)
}
