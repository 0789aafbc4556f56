package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newAPI serves an API on its own pool of url; cfg's other fields are
// kept, and the logger is quiet unless cfg gives one.
func newAPI(t *testing.T, url string, cfg Config) (*API, *httptest.Server) {
	t.Helper()
	return newAPIWith(t, url, "", cfg)
}

// newAPIAs serves an API whose pool connects as role.
func newAPIAs(t *testing.T, url, role string) (*API, *httptest.Server) {
	t.Helper()
	return newAPIWith(t, url, role, Config{NoCache: true})
}

func newAPIWith(t testing.TB, url, role string, cfg Config) (*API, *httptest.Server) {
	t.Helper()
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 4
	pcfg.ConnConfig.RuntimeParams["application_name"] = "pointsd-test-api"
	if role != "" {
		pcfg.ConnConfig.User = role
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg.Pool = pool
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

// listen runs a.Listen until t ends, and waits until the listener is
// proven alive (its first heartbeat heard) and the API's clock synced.
func listen(t testing.TB, a *API) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Listen(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	pgtest.Eventually(t, 10*time.Second, "the listener was not proven alive, or the clock not synced", func() bool {
		_, _, synced := a.clock.Offset()
		return a.live.up.Load() && synced
	})
}

// get fetches url and decodes its JSON body into a map.
func get(t *testing.T, url string) (response, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: body is not a JSON object: %v", url, err)
	}
	return response{resp.StatusCode, resp.Status, resp.Header}, body
}

// response is what tests look at of a response whose body was read.
type response struct {
	StatusCode int
	Status     string
	Header     http.Header
}
