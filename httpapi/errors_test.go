package httpapi

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/internal/localpg"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	t.Parallel()
	a, srv := newAPI(t, pgtest.NewDB(t, pgtest.Options{Users: 10}), Config{})

	resp, body := get(t, srv.URL+"/nope")
	if resp.StatusCode != 404 || body["error"] != "not found" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /nope: %s %v, want 404 {\"error\":\"not found\"}", resp.Status, body)
	}
	for _, path := range []string{"/", "/status", "/metrics"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s: %s, Allow %q; want 405 with Allow: GET, HEAD", path, resp.Status, resp.Header.Get("Allow"))
		}
	}
	// Route labels come from chi's patterns, never raw paths: one series
	// for every unmatched request, whatever its path.
	get(t, srv.URL+"/")
	get(t, srv.URL+"/another/nope")
	want := []string{"GET / 200", "GET unmatched 404", "POST unmatched 405"}
	if got := requestSeries(t, a); !slices.Equal(got, want) {
		t.Errorf("request series %v, want %v", got, want)
	}
}

func TestStatusReportsTheCycle(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 3, Users: 300})
	_, srv := newAPI(t, url, Config{})
	resp, body := get(t, srv.URL+"/status")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /status: %s", resp.Status)
	}
	st, err := pgsql.ReadState(context.Background(), pgtest.Pool(t, url))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"mode": "rolling", "leader": false, "cycle": 0.0, "floor": float64(st.Floor),
		"buckets_done": 3.0, "buckets_total": 3.0, "last_cycle_seconds": nil}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("/status %s = %#v, want %#v", k, body[k], v)
		}
	}
}

// When every database slot is taken, requests that need one are shed at
// once with 503, not queued.
func TestFloodIsShedWithFast503(t *testing.T) {
	t.Parallel()
	a, srv := newAPI(t, pgtest.NewDB(t, pgtest.Options{Users: 10}), Config{NoCache: true})
	for range cap(a.slots) {
		a.slots <- struct{}{}
	}
	defer func() {
		for range cap(a.slots) {
			<-a.slots
		}
	}()
	for _, path := range []string{"/", "/status", "/readyz"} {
		start := time.Now()
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 503 || body["error"] == nil || time.Since(start) > time.Second {
			t.Errorf("GET %s with no slot: %s %v in %v; want a fast 503", path, resp.Status, body, time.Since(start))
		}
	}
	if resp, _ := get(t, srv.URL+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz needs no database, got %s", resp.Status)
	}
}

// The database stops: /readyz and GET / answer 503 (as JSON, without SQL),
// /healthz stays 200, and all is well again once it is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	port := freePort(t)
	dir := pgtest.ServerDir(t)
	start := func() *localpg.Server { return pgtest.StartServer(t, dir, port) }
	pg := start()
	migrateAndSeed(t, pg.URL)

	_, srv := newAPI(t, pg.URL, Config{NoCache: true, DBTimeout: time.Second})
	for _, path := range []string{"/", "/readyz"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != 200 {
			t.Fatalf("GET %s with the database up: %s", path, resp.Status)
		}
	}
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/readyz", "/status"} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 503 || body["error"] != "database unavailable" {
			t.Errorf("GET %s with the database down: %s %v; want 503 database unavailable", path, resp.Status, body)
		}
	}
	if resp, _ := get(t, srv.URL+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz with the database down: %s, want 200", resp.Status)
	}
	start()
	for _, path := range []string{"/readyz", "/"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, _ := get(t, srv.URL+path)
			if resp.StatusCode == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s still %s 10s after the database came back", path, resp.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func migrateAndSeed(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pgsql.Migrate(ctx, pool, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pgsql.Seed(ctx, pool, 100, 1, nil); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	port, _ := strconv.Atoi(strings.TrimPrefix(l.Addr().String(), "127.0.0.1:"))
	return port
}

// requestSeries lists the HTTP histogram's series as "method route code".
func requestSeries(t testing.TB, a *API) []string {
	t.Helper()
	families, err := a.cfg.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range families {
		if f.GetName() != "pointsd_http_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out = append(out, l["method"]+" "+l["route"]+" "+l["code"])
		}
	}
	slices.Sort(out)
	return out
}
