package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/pointsd/pointsd/sql"
)

// timestampLayout is the previous query's time as the exercise sends it.
const timestampLayout = "2006-01-02 15:04:05"

// query answers GET /: up to two users above the floor, and the time of the
// previous query on this replica. The time is swapped in without a lock, so
// no request waits for another: each request gets the time stored by
// exactly one earlier request (or null, the first).
func (a *API) query(w http.ResponseWriter, r *http.Request) {
	var ans *answer
	var err error
	if a.cfg.NoCache {
		ans, err = a.readThrough(r)
	} else {
		ctx, cancel := a.dbContext(r)
		ans, err = a.cache.get(ctx)
		cancel()
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	prev := a.last.Swap(a.cfg.Now().UnixNano())

	b := make([]byte, 0, 96+len(ans.users))
	b = append(b, `{"users":`...)
	b = append(b, ans.users...)
	b = append(b, `,"timestamp":`...)
	if prev == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = time.Unix(0, prev).UTC().AppendFormat(b, timestampLayout)
		b = append(b, '"')
	}
	b = append(b, '}')
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
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
