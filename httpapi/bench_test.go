package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
)

// The handler's own cost, beside a static handler's, for profiling (go
// test -bench . -cpuprofile); make bench compares the two over TCP.

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkRootCached is GET / answered from the cache, with the cluster's
// previous-query time (publishing as serve does) and with the replica's
// own: the exchange's cost per request.
func BenchmarkRootCached(b *testing.B) {
	for _, c := range []struct {
		name    string
		replica bool
	}{{"cluster", false}, {"replica", true}} {
		b.Run(c.name, func(b *testing.B) {
			url := pgtest.NewDB(b, pgtest.Options{Users: 1000})
			// A leader's published schedule lets the answer be reused.
			if _, err := pgtest.Pool(b, url).Exec(b.Context(),
				`UPDATE cycle_state SET next_start = now() + interval '1 hour'`); err != nil {
				b.Fatal(err)
			}
			a, _ := newAPIWith(b, url, "", Config{CacheMaxAge: time.Hour, ReplicaQueryTime: c.replica})
			listen(b, a) // with heartbeats and clock syncs running, as in serve
			ctx, cancel := context.WithCancel(b.Context())
			done := make(chan struct{})
			go func() { a.PublishQueryTimes(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				a.ServeHTTP(&discard{h: http.Header{}}, r)
			}
		})
	}
}

// BenchmarkStaticHandler is the ceiling: fixed bytes, nothing behind them.
func BenchmarkStaticHandler(b *testing.B) {
	body := []byte(`{"users":[{"id":12,"points":88},{"id":31,"points":95}],"timestamp":"2020-07-30 17:09:33"}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(body)
	})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(&discard{h: http.Header{}}, r)
	}
}
