package citustest_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/internal/citustest"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
)

// On Citus the previous-query time is exchanged on the coordinator: a
// plain table there (not distributed: no shard to reach on a worker), and
// its NOTIFY heard from the coordinator. A replica's first answer is the
// other replica's query.
func TestQueryTimeOnTheCoordinator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{Partitions: 2, Users: 1000})
	pool := pgtest.Pool(t, url)
	var distributed bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'query_times'::regclass)`).
		Scan(&distributed); err != nil || distributed {
		t.Fatalf("query_times is in pg_dist_partition: %v (%v), want a local table on the coordinator", distributed, err)
	}

	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = listener.Close(ctx) }()
	if _, err := listener.Exec(ctx, `LISTEN `+pgsql.QueryTimesChannel); err != nil {
		t.Fatal(err)
	}

	replica := func() string {
		api, err := httpapi.New(httpapi.Config{Pool: pgtest.Pool(t, url), Metrics: metrics.New(), Logger: quiet, NoCache: true})
		if err != nil {
			t.Fatal(err)
		}
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { api.PublishQueryTimes(pctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	a, b := replica(), replica()

	before := time.Now().Truncate(time.Second)
	var body getBody
	get(t, a+"/", &body)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no query time NOTIFYed by the coordinator within 5s: %v", err)
	}
	_, at, err := pgsql.ParseQueryTime(n.Payload)
	if err != nil || at.Before(before) || at.After(time.Now()) {
		t.Fatalf("query time NOTIFYed: %q (%v), want the query's", n.Payload, err)
	}
	if get(t, b+"/", &body); body.Timestamp == nil || *body.Timestamp != at.UTC().Format(time.DateTime) {
		t.Errorf("the other replica's first answer: timestamp %v, want the first replica's query %s", body.Timestamp, at.UTC().Format(time.DateTime))
	}
}
