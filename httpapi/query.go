package httpapi

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pointsd/pointsd/pgsql"
)

// timestampLayout is the previous query's time as the exercise sends it.
const timestampLayout = "2006-01-02 15:04:05"

// query answers GET /: up to two users above the floor, and the time of the
// previous query to the cluster (see queryTimes). This replica's time is
// swapped in without a lock, so no request waits for another: each request
// gets the time stored by exactly one earlier request on this replica, or a
// later one published by another replica (or null, the cluster's first).
func (a *API) query(w http.ResponseWriter, r *http.Request) { a.answer(w, r, time.Now()) }

// serveRoot serves GET and HEAD / without the router and its middleware,
// timing the request itself: nearly every request is one, and the router's
// context, the response writer's wrapper and the labels' hashing were most
// of what a cached answer cost (1.5 µs a request with them, 0.6 µs
// without: go test -bench . ./httpapi). What it records is what instrument
// would have. The start's one clock reading also serves the cache and the
// query's time (pgsql.Clock.At): five readings a request were 0.2 µs of
// its 0.54 µs on a VM where time.Now takes 39 ns; two are 0.33 µs.
func (a *API) serveRoot(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := a.answer(w, r, start)
	o := a.rootOK
	if code != http.StatusOK || r.Method != http.MethodGet {
		o = a.observers.get("/", r.Method, code)
	}
	o.Observe(time.Since(start).Seconds())
}

// answer writes the answer to GET / and returns its status.
func (a *API) answer(w http.ResponseWriter, r *http.Request, start time.Time) int {
	dbNow, latest, synced := a.clock.At(start)
	ans := a.cache.hit(start, latest, synced) // nil with the cache off: it is never filled
	if ans == nil {
		var err error
		if ans, err = a.read(r); err != nil {
			return a.fail(w, r, err)
		}
		// The query's time is when it is answered: a request that waited
		// for a read must not swap in a time before those answered
		// meanwhile.
		dbNow, _, _ = a.clock.At(time.Now())
	}
	if !a.times.loaded.Load() {
		ctx, cancel := a.dbContext(r)
		a.times.ensureLoaded(ctx)
		cancel()
	}
	if a.cfg.Now != nil {
		dbNow = a.cfg.Now()
	}
	prev := a.times.swap(dbNow.UnixNano())

	bp := bodies.Get().(*[]byte)
	defer bodies.Put(bp)
	b := append((*bp)[:0], `{"users":`...)
	b = append(b, ans.users...)
	b = append(b, `,"timestamp":`...)
	if prev == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = a.stamps.append(b, prev)
		b = append(b, '"')
	}
	b = append(b, '}')
	w.Header()["Content-Type"] = contentJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	*bp = b
	return http.StatusOK
}

// bodies are GET /'s response buffers, reused: the response writer copies
// what it is given, and an allocation per request was most of what GET /
// added to net/http's own garbage.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// stamps formats previous-query times. They have a resolution of a
// second, and under load thousands of requests in a row send the same one:
// the last one formatted is kept and reused.
type stamps struct{ last atomic.Pointer[stamp] }

type stamp struct {
	sec  int64
	text []byte
}

// append appends the time of t (Unix nanoseconds) in timestampLayout, UTC.
func (s *stamps) append(b []byte, t int64) []byte {
	sec := t / int64(time.Second)
	if st := s.last.Load(); st != nil && st.sec == sec {
		return append(b, st.text...)
	}
	text := time.Unix(sec, 0).UTC().AppendFormat(nil, timestampLayout)
	s.last.Store(&stamp{sec, text})
	return append(b, text...)
}

// contentJSON is GET /'s Content-Type, shared by every response: net/http
// only reads it.
var contentJSON = []string{"application/json"}

// read waits for an answer read after r arrived: the cache's next refresh,
// or, with the cache off, a read of r's own.
func (a *API) read(r *http.Request) (*answer, error) {
	if a.cfg.NoCache {
		return a.readThrough(r)
	}
	ctx, cancel := a.dbContext(r)
	defer cancel()
	return a.cache.get(ctx)
}

// readThrough reads an answer for this request alone (the cache is off),
// within the pool's bound.
func (a *API) readThrough(r *http.Request) (*answer, error) {
	if err := a.acquire(r); err != nil {
		return nil, err
	}
	defer a.release()
	ctx, cancel := a.dbContext(r)
	defer cancel()
	return pgsql.RetryRead(ctx, a.cfg.Pool.Reset, func(ctx context.Context) (*answer, error) { return read(ctx, a.cfg.Pool) })
}
