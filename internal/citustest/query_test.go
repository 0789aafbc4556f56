package citustest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/internal/citustest"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

type getBody struct {
	Users []struct {
		ID     int64 `json:"id"`
		Points int   `json:"points"`
	} `json:"users"`
	Timestamp *string `json:"timestamp"`
}

// GET / on a Citus coordinator answers as on one PostgreSQL: up to two
// users strictly above the floor, with the points their bucket's draw
// gives them, and the previous query's time (null the first time); with
// and without the cache. /readyz and /status answer too, and a cached
// answer is dropped when the coordinator's NOTIFY says a cycle started.
func TestGetOnCitus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{Partitions: 4, Users: users})
	pool := pgtest.Pool(t, url)
	u, _, _ := newUpdater(t, url, updater.Config{Mode: pointsd.Rolling})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := pgsql.ReadState(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, noCache := range []bool{true, false} {
		// A cached answer lives for a minute unless a notification drops it.
		api, err := httpapi.New(httpapi.Config{Pool: pgtest.Pool(t, url), Metrics: metrics.New(), Logger: quiet,
			NoCache: noCache, CacheMaxAge: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close) // also when a check below fails
		for i := range 3 {
			var body getBody
			code, h := get(t, srv.URL+"/", &body)
			if code != http.StatusOK || h.Get("Content-Type") != "application/json" {
				t.Fatalf("GET / (cache %v): %d %s", !noCache, code, h.Get("Content-Type"))
			}
			if (i == 0) != (body.Timestamp == nil) {
				t.Errorf("GET / #%d (cache %v): timestamp %v", i+1, !noCache, body.Timestamp)
			}
			if len(body.Users) != 2 && st.Floor < 100 {
				t.Errorf("GET / (cache %v): %d users above floor %d among %d", !noCache, len(body.Users), st.Floor, users)
			}
			for _, usr := range body.Users {
				var want int
				if err := pool.QueryRow(ctx, `SELECT pointsd_draw($1, $2)`, usr.ID, st.Seed).Scan(&want); err != nil {
					t.Fatal(err)
				}
				if usr.Points <= st.Floor || usr.Points != want {
					t.Errorf("GET / (cache %v): user %d with %d points (draw %d), floor %d", !noCache, usr.ID, usr.Points, want, st.Floor)
				}
			}
		}
		for _, path := range []string{"/readyz", "/status"} {
			if code, _ := get(t, srv.URL+path, nil); code != http.StatusOK {
				t.Errorf("GET %s: %d", path, code)
			}
		}
		if !noCache {
			checkNotified(t, url, api, srv.URL)
		}
	}
}

// checkNotified runs a strict cycle in another updater (as another replica
// would) and waits for GET / on srv to answer from the new cycle, which only
// the coordinator's notification can tell api's cache.
func checkNotified(t *testing.T, url string, api *httpapi.API, srv string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		api.Listen(ctx)
	}()
	defer func() { cancel(); <-done }()
	pool := pgtest.Pool(t, url)
	// The listener subscribes asynchronously: wait until the coordinator
	// has it, so the cycle's notification cannot be missed.
	pgtest.Eventually(t, 5*time.Second, "the listener subscribes", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pointsd-listen/%' AND query ILIKE 'listen%'`).Scan(&n)
		return err == nil && n > 0
	})
	other, _, _ := newUpdater(t, url, updater.Config{Mode: pointsd.Strict})
	if _, err := other.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := pgsql.ReadState(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Eventually(t, 5*time.Second, "GET / answers from the new cycle", func() bool {
		var body getBody
		get(t, srv+"/", &body)
		for _, usr := range body.Users {
			var want int
			if err := pool.QueryRow(ctx, `SELECT pointsd_draw($1, $2)`, usr.ID, st.Seed).Scan(&want); err != nil || usr.Points != want || usr.Points <= st.Floor {
				return false
			}
		}
		return len(body.Users) > 0 || st.Floor == 100
	})
}

// Citus commits a bucket on the coordinator before its workers, so a
// reader can meet a bucket whose claim committed and whose users did not
// yet. Made here by claiming buckets without rewriting them (exactly what
// such a reader sees), for three buckets of four (the first three, which
// readers try first) and then for every bucket
// with a new floor (a strict cycle half committed): no answer pairs a user
// with points its bucket's recorded seed does not give.
func TestQueryNeverPairsTornPoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{Partitions: 4, Users: users})
	pool := pgtest.Pool(t, url)
	u, _, _ := newUpdater(t, url, updater.Config{Mode: pointsd.Rolling})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	// A floor that leaves users to answer (a random one is 100 once in
	// 101 cycles).
	if _, err := pool.Exec(ctx, `UPDATE cycle_state SET floor = 50`); err != nil {
		t.Fatal(err)
	}
	tears := []string{
		// Bucket 0, which readers try first, among them.
		`UPDATE buckets SET cycle = cycle + 1, seed = 4242 WHERE bucket < 3`,
		`WITH s AS (UPDATE cycle_state SET cycle = cycle + 1, seed = 777, floor = 50 RETURNING cycle)
		 UPDATE buckets SET cycle = s.cycle, seed = 777 FROM s`,
	}
	for _, tear := range tears {
		if _, err := pool.Exec(ctx, tear); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			a, err := pgsql.QueryAnswer(ctx, pool)
			if err != nil {
				t.Fatal(err)
			}
			for _, usr := range a.Users {
				var want int
				var seed int64
				if err := pool.QueryRow(ctx, `SELECT seed, pointsd_draw($1, seed) FROM buckets WHERE bucket = $2`,
					usr.ID, usr.Bucket).Scan(&seed, &want); err != nil {
					t.Fatalf("user %d in bucket %d: %v", usr.ID, usr.Bucket, err)
				}
				var holds bool
				if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM `+partitionOf(t, pool, usr.Bucket)+` WHERE id = $1)`, usr.ID).Scan(&holds); err != nil || !holds {
					t.Fatalf("user %d is not in bucket %d's partition (%v)", usr.ID, usr.Bucket, err)
				}
				if usr.Points != want || usr.Points <= a.Floor {
					t.Fatalf("answer pairs user %d (%d points) with bucket %d's seed %d (draw %d) and floor %d",
						usr.ID, usr.Points, usr.Bucket, seed, want, a.Floor)
				}
			}
			if len(a.Users) == 0 {
				t.Error("no user answered: the users whose points match were left out too")
			}
		}
	}
}

// partitionOf is bucket i's partition, quoted.
func partitionOf(t *testing.T, db pgsql.DBTX, i int) string {
	t.Helper()
	bs, err := pgsql.Buckets(context.Background(), db)
	if err != nil || i < 0 || i >= len(bs) || bs[i].Partition == nil {
		t.Fatalf("bucket %d: %v", i, err)
	}
	return bs[i].Partition.Sanitize()
}

// get fetches url, decoding its JSON body into v when v is not nil, and
// returns its status and headers.
func get(t *testing.T, url string, v any) (int, http.Header) {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // a test server's URL
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, resp.Header
}
