package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
)

// Damage done by hand makes /readyz 503 with the reason and counts it,
// and GET / says it is not ready rather than blaming the database.
func TestReadyzReportsDamage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 3, Users: 300})
	pool := pgtest.Pool(t, url)
	m := metrics.New()
	_, srv := newAPI(t, url, Config{Metrics: m, NoCache: true})
	if resp, _ := get(t, srv.URL+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("/readyz on a healthy database: %s", resp.Status)
	}
	if _, err := pool.Exec(ctx, `DROP TABLE users_p1; DELETE FROM cycle_state`); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, srv.URL+"/readyz")
	problems, _ := body["problems"].([]any)
	if resp.StatusCode != 503 || body["error"] != "database damaged" || len(problems) != 2 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("/readyz with a partition and the state gone: %s %v (Retry-After %q); want 503 with two problems",
			resp.Status, body, resp.Header.Get("Retry-After"))
	}
	for _, c := range []string{pgsql.CheckPartitions, pgsql.CheckStateRow} {
		if got := testutil.ToFloat64(m.StateProblems.WithLabelValues(c)); got != 1 {
			t.Errorf("pointsd_state_problems{check=%q} = %v, want 1", c, got)
		}
	}
	if resp, body := get(t, srv.URL+"/"); resp.StatusCode != 503 || body["error"] != "not ready" {
		t.Errorf("GET / without a state row: %s %v; want 503 not ready", resp.Status, body)
	}
}

// A database outage fails every request; the log gets a line a second
// with a count, not a line per request.
func TestFailedRequestsAreLoggedOnceASecond(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Users: 10})
	var logs strings.Builder
	a, srv := newAPI(t, url, Config{NoCache: true})
	a.failures.logger = slog.New(slog.NewTextHandler(&logs, nil))
	a.cfg.Pool.Close() // every request now fails on the database
	const n = 200
	for range n {
		if resp, _ := get(t, srv.URL+"/"); resp.StatusCode != 503 {
			t.Fatalf("GET / with the pool closed: %s, want 503", resp.Status)
		}
	}
	lines := strings.Count(logs.String(), "\n")
	if lines < 1 || lines > 3 {
		t.Errorf("%d failed requests wrote %d log lines, want one a second:\n%s", n, lines, logs.String())
	}
}

// Sessions ended server-side while idle in the pool (a restart, an
// administrator) cost the client nothing: the read is retried once.
func TestReadIsRetriedAfterSessionsAreTerminated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Users: 10})
	admin := pgtest.Pool(t, url)
	a, srv := newAPI(t, url, Config{NoCache: true})
	for range 5 {
		// Fill the pool with idle connections, then end them all.
		var conns []interface{ Release() }
		for range 3 {
			c, err := a.cfg.Pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Release()
		}
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
			WHERE application_name = 'pointsd-test-api' AND datname = current_database()`); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/", "/readyz", "/status"} {
			if resp, body := get(t, srv.URL+path); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s after its sessions were terminated: %s %v, want 200", path, resp.Status, body)
			}
		}
	}
}

// A role the database refuses is the database being unavailable (503),
// as /readyz says too, not an internal error.
func TestRefusedCredentialsAre503(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Users: 10})
	_, srv := newAPIAs(t, url, "nobody_at_all")
	for _, path := range []string{"/", "/readyz", "/status"} {
		if resp, body := get(t, srv.URL+path); resp.StatusCode != 503 || body["error"] != "database unavailable" {
			t.Errorf("GET %s as an unknown role: %s %v, want 503 database unavailable", path, resp.Status, body)
		}
	}
}

// A partition made by hand, which no bucket maps, neither crashes the
// replica (the read runs outside the HTTP server's recovery) nor lets its
// users be cached: nothing is known of when they change.
func TestUserInAnUnmappedPartition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 10})
	pool := pgtest.Pool(t, url)
	if _, err := pool.Exec(ctx, `
		DROP TABLE users_p0;
		CREATE TABLE users_p0 PARTITION OF users FOR VALUES WITH (MODULUS 2, REMAINDER 0);
		INSERT INTO users (id, points) SELECT g, 100 FROM generate_series(1001, 1010) g;
		UPDATE cycle_state SET floor = 50, next_start = now() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	a, srv := newAPI(t, url, Config{})
	resp, body := get(t, srv.URL+"/")
	users, _ := body["users"].([]any)
	if resp.StatusCode != 200 || len(users) != 2 {
		t.Fatalf("GET / with users in an unmapped partition: %s %v, want 200 with two users", resp.Status, body)
	}
	if ans := a.cache.current.Load(); ans == nil || !ans.until.IsZero() {
		t.Errorf("an answer with users outside every bucket is reusable until %v, want not at all", ans.until)
	}
}

// pointsd migrate restores a deleted cycle_state row with a new floor,
// outside the published schedule: every replica's cached answer, which the
// schedule said would hold for an hour, is dropped at once (the repair
// notifies, as a cycle's start does), and the next answer is the repaired
// state's.
func TestRepairDropsCachedAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 2_000})
	pool := pgtest.Pool(t, url)
	c := pointsd.Cycle{Schedule: pointsd.Schedule{Cycle: 1, Floor: 60, Period: time.Hour, StartedAt: time.Now()}, Seed: 7, Mode: pointsd.Strict}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, _, err := pgsql.DrawAll(ctx, tx, c)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := pgsql.FinishCycle(ctx, pool, 1, 0, time.Second, 0); err != nil {
		t.Fatal(err)
	}
	a, srv := newAPI(t, url, Config{CacheMaxAge: 24 * time.Hour})
	listen(t, a)
	get(t, srv.URL+"/")
	before := a.cache.current.Load()
	if before == nil || time.Until(before.until) < 30*time.Minute {
		t.Fatalf("answer %+v; want one the schedule lets live for the hour", before)
	}

	if _, err := pool.Exec(ctx, `DELETE FROM cycle_state`); err != nil {
		t.Fatal(err)
	}
	repaired, err := pgsql.Repair(ctx, pool)
	if err != nil || len(repaired) == 0 {
		t.Fatalf("Repair = %q, %v; want the state row restored", repaired, err)
	}
	var floor int
	if err := pool.QueryRow(ctx, `SELECT floor FROM cycle_state`).Scan(&floor); err != nil {
		t.Fatal(err)
	}
	pgtest.Eventually(t, 2*time.Second, "GET / answers from the repaired state", func() bool {
		get(t, srv.URL+"/")
		cur := a.cache.current.Load()
		return cur != before && cur.ans.Floor == floor
	})
}
