package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
)

// The previous query is the later of this replica's and the others',
// never one at or after the request.
func TestPreviousDecides(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name                string
		local, others, want int64
	}{
		{"the cluster's first query", 0, 0, 0},
		{"only this replica was queried", 5, 0, 5},
		{"only another replica was queried", 0, 7, 7},
		{"another replica was queried last", 5, 7, 7},
		{"this replica was queried last", 8, 7, 8},
		{"another replica's query came after this one", 5, 10, 5},
		{"another replica's query in the same instant", 5, 9, 5},
	} {
		if got := previous(c.local, c.others, 9); got != c.want {
			t.Errorf("%s: previous(%d, %d, now 9) = %d, want %d", c.name, c.local, c.others, got, c.want)
		}
	}
}

// Two replicas on one database: each learns the other's query within the
// publish interval and the delivery, answers with it, and publishes
// nothing while it is not queried.
func TestQueryTimeIsTheClusters(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	ma, mb := metrics.New(), metrics.New()
	// One clock for both, a second a query, so that every answer tells
	// the queries apart.
	base := time.Date(2020, 7, 30, 0, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Second) }
	a, srvA := newExchanging(t, url, Config{Metrics: ma, Now: now})
	b, srvB := newExchanging(t, url, Config{Metrics: mb, Now: now})

	// bound is what the tests hold the exchange to: the interval, and
	// 150 ms for the delivery on a machine shared with the rest of the
	// tests under the race detector.
	const bound = DefaultQueryTimeEvery + 150*time.Millisecond
	var prev *time.Time
	for i := range 6 {
		api, srv, other := a, srvA, b
		if i%2 == 1 {
			api, srv, other = b, srvB, a
		}
		before := time.Now()
		_, body := get(t, srv+"/")
		switch {
		case prev == nil && body["timestamp"] != nil:
			t.Fatalf("query %d, the cluster's first: timestamp %v, want null", i+1, body["timestamp"])
		case prev != nil && body["timestamp"] != prev.UTC().Format(timestampLayout):
			t.Fatalf("query %d: timestamp %v, want the previous query's (to the other replica) %s", i+1, body["timestamp"], prev.UTC().Format(timestampLayout))
		}
		at := time.Unix(0, api.times.last.Load())
		prev = &at
		pgtest.Eventually(t, 5*time.Second, "the other replica did not learn the query", func() bool {
			return other.times.others.Load() >= at.UnixNano()
		})
		if took := time.Since(before); took > bound+50*time.Millisecond { // the request's own time besides
			t.Errorf("query %d: the other replica learned it %v after the request, want within %v", i+1, took, bound)
		}
	}

	// Idle replicas publish nothing.
	published := testutil.ToFloat64(ma.QueryTimePublishes) + testutil.ToFloat64(mb.QueryTimePublishes)
	if published != 6 {
		t.Errorf("%v publishes for 6 queries, each awaited by the other replica, want 6", published)
	}
	time.Sleep(3 * DefaultQueryTimeEvery)
	if now := testutil.ToFloat64(ma.QueryTimePublishes) + testutil.ToFloat64(mb.QueryTimePublishes); now != published {
		t.Errorf("idle replicas published %v times", now-published)
	}
}

// Two replicas whose own clocks are 3 s fast and 3 s slow stamp their
// queries on the database's clock: each answer is the previous query's
// time, to the second, as a client's true clock saw it. The skew is the
// local clock their Clock measures the database's against.
func TestQueryTimeIsOnTheDatabasesClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	pool := pgtest.Pool(t, url)
	var apis [2]*API
	var srvs [2]string
	for i, skew := range []time.Duration{3 * time.Second, -3 * time.Second} {
		clock := pgsql.NewClock(func() time.Time { return time.Now().Add(skew) })
		if err := clock.Sync(ctx, pool); err != nil {
			t.Fatal(err)
		}
		apis[i], srvs[i] = newExchanging(t, url, Config{Clock: clock})
	}
	second := func(t time.Time) string { return t.UTC().Format(timestampLayout) }
	var sent, done time.Time // the previous query, on the test's true clock
	for i := range 6 {
		api, other := apis[i%2], apis[1-i%2]
		before := time.Now()
		_, body := get(t, srvs[i%2]+"/")
		after := time.Now()
		if i > 0 {
			ts, _ := body["timestamp"].(string)
			if ts != second(sent) && ts != second(done) {
				t.Errorf("query %d: timestamp %v, want the previous query's, %s (to the other replica)", i+1, body["timestamp"], second(sent))
			}
		}
		sent, done = before, after
		at := api.times.last.Load() / 1000 * 1000 // published to the microsecond
		pgtest.Eventually(t, 5*time.Second, fmt.Sprintf("the other replica learns query %d", i+1), func() bool {
			return other.times.others.Load() >= at
		})
		time.Sleep(150 * time.Millisecond)
	}
}

// newExchanging serves an API that runs its listener and its query-time
// publisher until t ends.
func newExchanging(t *testing.T, url string, cfg Config) (*API, string) {
	t.Helper()
	cfg.NoCache = true
	a, srv := newAPI(t, url, cfg)
	runExchange(t, a)
	return a, srv.URL
}

// runExchange runs a's listener and query-time publisher until t ends.
func runExchange(t *testing.T, a *API) {
	t.Helper()
	listen(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.PublishQueryTimes(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// While the exchange fails (here its table is gone: the same path as a
// database that does not answer), a replica answers with its own previous
// query, and once it is back the others learn its latest query.
func TestQueryTimeCatchesUpAfterTheExchangeFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	pool := pgtest.Pool(t, url)
	base := time.Date(2020, 7, 30, 0, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Second) }
	ma := metrics.New()
	a, srvA := newExchanging(t, url, Config{Metrics: ma, Now: now})
	b, srvB := newExchanging(t, url, Config{Now: now})
	get(t, srvB+"/") // both have loaded the (empty) exchange
	get(t, srvA+"/")

	if _, err := pool.Exec(ctx, `ALTER TABLE query_times RENAME TO query_times_away`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		want := time.Unix(0, a.times.last.Load()).UTC().Format(timestampLayout)
		if resp, body := get(t, srvA+"/"); resp.StatusCode != 200 || body["timestamp"] != want {
			t.Fatalf("query %d while the exchange fails: %s %v, want 200 and this replica's previous query %s", i+1, resp.Status, body, want)
		}
	}
	pgtest.Eventually(t, 5*time.Second, "no publish failed", func() bool { return testutil.ToFloat64(ma.QueryTimePublishErrors) > 0 })

	if _, err := pool.Exec(ctx, `ALTER TABLE query_times_away RENAME TO query_times`); err != nil {
		t.Fatal(err)
	}
	latest := a.times.last.Load()
	pgtest.Eventually(t, 5*time.Second, "the other replica did not catch up", func() bool { return b.times.others.Load() >= latest })
	if _, body := get(t, srvB+"/"); body["timestamp"] != time.Unix(0, latest).UTC().Format(timestampLayout) {
		t.Errorf("the other replica after the exchange is back: timestamp %v, want %s", body["timestamp"], time.Unix(0, latest).UTC().Format(timestampLayout))
	}
}

// -query-time replica: each replica answers its own previous query and
// writes nothing.
func TestReplicaQueryTimeWritesNothing(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	m := metrics.New()
	_, srvA := newExchanging(t, url, Config{Metrics: m, ReplicaQueryTime: true})
	_, srvB := newExchanging(t, url, Config{ReplicaQueryTime: true})
	get(t, srvA+"/")
	if _, body := get(t, srvA+"/"); body["timestamp"] == nil {
		t.Fatalf("second query to a replica: timestamp null, want its first query's")
	}
	if _, body := get(t, srvB+"/"); body["timestamp"] != nil {
		t.Errorf("first query to the other replica: timestamp %v, want null (per replica)", body["timestamp"])
	}
	var rows int
	if err := pgtest.Pool(t, url).QueryRow(context.Background(), `SELECT count(*) FROM query_times`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("query_times has %d rows (%v), want none", rows, err)
	}
	if n := testutil.ToFloat64(m.QueryTimePublishes); n != 0 {
		t.Errorf("%v publishes, want none", n)
	}
}

// A replica whose role may only read answers, learns the others' query
// times, and says once that its own do not count.
func TestReadOnlyReplicaLearnsQueryTimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	pool := pgtest.Pool(t, url)
	role := fmt.Sprintf("reader_%d", time.Now().UnixNano())
	if _, err := pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(ctx, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	var logs pgtest.SyncBuffer
	m := metrics.New()
	reader, srvR := newAPIWith(t, url, role, Config{Metrics: m, NoCache: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	runExchange(t, reader)
	writer, srvW := newExchanging(t, url, Config{})

	for range 3 {
		if resp, _ := get(t, srvR.URL+"/"); resp.StatusCode != 200 {
			t.Fatalf("GET / on the reader: %s", resp.Status)
		}
	}
	pgtest.Eventually(t, 5*time.Second, "the reader's publish was not refused", func() bool { return testutil.ToFloat64(m.QueryTimePublishErrors) > 0 })
	get(t, srvW+"/")
	at := time.Unix(0, writer.times.last.Load()).Truncate(time.Microsecond).UnixNano() // published to the µs
	pgtest.Eventually(t, 5*time.Second, "the reader did not learn the writer's query", func() bool { return reader.times.others.Load() >= at })
	if _, body := get(t, srvR.URL+"/"); body["timestamp"] != time.Unix(0, at).UTC().Format(timestampLayout) {
		t.Errorf("the reader's answer after the writer's query: %v, want %s", body["timestamp"], time.Unix(0, at).UTC().Format(timestampLayout))
	}
	if n := strings.Count(logs.String(), "may not write query_times"); n != 1 {
		t.Errorf("the reader said %d times that it may not write query_times, want once:\n%s", n, logs.String())
	}
}
