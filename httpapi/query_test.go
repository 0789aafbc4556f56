package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
)

// The JSON shape exactly: users an array of {id, points} numbers, timestamp
// null at first, then the previous query's UTC time as YYYY-MM-DD HH:MM:SS.
func TestQueryShape(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	pool := pgtest.Pool(t, url)
	if _, err := pool.Exec(context.Background(), `
		UPDATE cycle_state SET floor = 10;
		UPDATE users SET points = 20 WHERE id IN (5, 9)`); err != nil {
		t.Fatal(err)
	}
	// The clock is 12:34:56 at UTC+2: the timestamp must say 10:34:56.
	at := time.Date(2020, 7, 30, 12, 34, 56, 0, time.FixedZone("x", 2*3600))
	_, srv := newAPI(t, url, Config{Now: func() time.Time { return at }})

	for i, want := range []any{nil, "2020-07-30 10:34:56"} {
		resp, body := get(t, srv.URL+"/")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
		}
		if len(body) != 2 || body["timestamp"] != want {
			t.Fatalf("query %d: body %v, want keys users and timestamp = %v", i+1, body, want)
		}
		users, ok := body["users"].([]any)
		if !ok || len(users) != 2 {
			t.Fatalf("users = %#v, want an array of the 2 users above the floor", body["users"])
		}
		var ids []float64
		for _, u := range users {
			m, ok := u.(map[string]any)
			id, okID := m["id"].(float64)
			points, okP := m["points"].(float64)
			if !ok || len(m) != 2 || !okID || !okP || points != 20 {
				t.Fatalf("user %#v, want {\"id\":number,\"points\":20}", u)
			}
			ids = append(ids, id)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []float64{5, 9}) {
			t.Fatalf("ids %v, want [5 9]", ids)
		}
	}
}

// Strictly greater: a user exactly at the floor is not returned, and with
// the floor at 100 nobody is: "users":[].
func TestQueryIsStrictlyAboveTheFloor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Users: 10})
	pool := pgtest.Pool(t, url)
	if _, err := pool.Exec(ctx, `
		UPDATE cycle_state SET floor = 50;
		UPDATE users SET points = 50 WHERE id <= 8;
		UPDATE users SET points = 51 WHERE id = 9;
		UPDATE users SET points = 100 WHERE id = 10`); err != nil {
		t.Fatal(err)
	}
	a, srv := newAPI(t, url, Config{})
	body := rawGet(t, srv.URL+"/")
	if !regexp.MustCompile(`^\{"users":\[\{"id":(9|10),"points":(51|100)\},\{"id":(9|10),"points":(51|100)\}\],"timestamp":null\}$`).MatchString(body) {
		t.Fatalf("floor 50: %s; want users 9 and 10 only", body)
	}
	for _, floor := range []int{100, 51} {
		if _, err := pool.Exec(ctx, `UPDATE cycle_state SET floor = $1`, floor); err != nil {
			t.Fatal(err)
		}
		a.cache.invalidate()
		body := rawGet(t, srv.URL+"/")
		want := map[int]string{100: `{"users":[],"timestamp":"`, 51: `{"users":[{"id":10,"points":100}],"timestamp":"`}[floor]
		if len(body) < len(want) || body[:len(want)] != want {
			t.Fatalf("floor %d: %s; want %s…", floor, body, want)
		}
	}
}

func rawGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b)
}

// Hundreds of concurrent queries: each stores its own time and gets back
// the time stored by exactly one earlier query, one of them null, none lost
// or repeated. The clock ticks a second per call so that every stored time
// is told apart at the response's precision.
func TestPreviousQueryTimesFormAChain(t *testing.T) {
	t.Parallel()
	base := time.Date(2020, 7, 30, 0, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	_, srv := newAPI(t, pgtest.NewDB(t, pgtest.Options{Users: 100}), Config{
		Now: func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Second) },
	})

	const n = 400
	var mu sync.Mutex
	var got []string
	nulls := 0
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	query := func() {
		resp, err := client.Get(srv.URL + "/")
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		var body struct{ Timestamp *string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if body.Timestamp == nil {
			nulls++
		} else {
			got = append(got, *body.Timestamp)
		}
	}
	for range n {
		wg.Go(query)
	}
	wg.Wait()
	query() // returns the last time the concurrent queries stored

	if nulls != 1 {
		t.Fatalf("%d null timestamps, want exactly 1", nulls)
	}
	// The n concurrent queries stored ticks 1..n; each must come back once.
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, base.Add(time.Duration(i)*time.Second).Format(timestampLayout))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("returned timestamps are not the %d stored ones, each once (got %d)", n, len(got))
	}
}
