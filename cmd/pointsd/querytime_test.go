package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/internal/pgtest"
)

// queryTimeBound is the bound the tests hold GET /'s timestamp to: the
// publish interval, plus 150 ms for the publish's and the notification's
// trips on a machine shared with the rest of the tests.
const queryTimeBound = httpapi.DefaultQueryTimeEvery + 150*time.Millisecond

// Two replicas queried in turn, as a round-robin balancer sends them, at
// intervals of 1.1–1.6 s: every answer but the cluster's first gives the
// previous query's time, whichever replica it went to; and the same after
// both replicas restart (the first answer then is the last query's before
// the restart).
func TestPreviousQueryTimeIsTheClusters(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 200})
	env := map[string]string{"DATABASE_URL": url, "POINTSD_SHUTDOWN_DELAY": "0s"}
	addrs := []string{freeAddr(t), freeAddr(t)}
	start := func() (stop func()) {
		var stops []func()
		for _, addr := range addrs {
			stops = append(stops, serveInBackground(t, env, "-addr", addr))
			waitStatus(t, "http://"+addr+"/readyz", http.StatusOK)
		}
		return func() {
			for _, stop := range stops {
				stop()
			}
		}
	}

	var prev *exchange // the previous query, to either replica
	queryInTurns := func(round string, n int) {
		for i := range n {
			if prev != nil {
				time.Sleep(time.Duration(1100+rand.IntN(500)) * time.Millisecond) //nolint:gosec // an interval, not a secret
			}
			q, err := getTimestamp(addrs[i%2])
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case prev == nil && q.answer != nil:
				t.Fatalf("%s, query %d (%s): the cluster's first query answered %q, want null", round, i+1, addrs[i%2], *q.answer)
			case prev != nil && (q.answer == nil || !prev.servedIn(*q.answer)):
				t.Fatalf("%s, query %d (%s): timestamp %v, want the previous query's (to %s, between %s and %s)",
					round, i+1, addrs[i%2], show(q.answer), prev.replica, prev.sent.UTC().Format(time.TimeOnly+".000"), prev.received.UTC().Format(time.TimeOnly+".000"))
			}
			prev = &q
		}
	}
	stop := start()
	queryInTurns("first start", 4)
	stop()
	start()
	queryInTurns("after both restarted", 4)
}

// Two replicas queried at once by several clients: no answer is later
// than its own request, and none misses a query answered more than the
// bound before it. The replicas' clients take turns of 1.2 s, so that the
// first answers of each turn must be the other replica's queries: the
// replica's own last query is a second older.
func TestPreviousQueryTimeUnderConcurrentLoad(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 200})
	env := map[string]string{"DATABASE_URL": url, "POINTSD_SHUTDOWN_DELAY": "0s"}
	addrs := []string{freeAddr(t), freeAddr(t)}
	for _, addr := range addrs {
		serveInBackground(t, env, "-addr", addr)
		waitStatus(t, "http://"+addr+"/readyz", http.StatusOK)
	}

	const clientsPerReplica, duration, turn = 3, 6 * time.Second, 1200 * time.Millisecond
	var (
		mu  sync.Mutex
		all []exchange
		wg  sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(duration)
	for i := range 2 * clientsPerReplica {
		wg.Go(func() {
			var mine []exchange
			for now := time.Now(); now.Before(end); now = time.Now() {
				if int(now.Sub(start)/turn)%2 != i%2 {
					time.Sleep(5 * time.Millisecond) // the other replica's turn
					continue
				}
				q, err := getTimestamp(addrs[i%2])
				if err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, q)
				// Paced, so as not to starve the tests running beside.
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			all = append(all, mine...)
		})
	}
	wg.Wait()

	// The latest query that must count for an answer (answered more than
	// the bound before its request was sent, or before it on the same
	// replica) was sent at or after latestSent.
	everyone := answeredBefore(all)
	byReplica := map[string]answered{}
	for _, addr := range addrs {
		byReplica[addr] = answeredBefore(slices.DeleteFunc(slices.Clone(all), func(q exchange) bool { return q.replica != addr }))
	}
	violations := 0
	for _, q := range all {
		if q.answer != nil && q.answer.After(q.received) {
			violations++
			t.Errorf("%s: request answered at %s says the previous query was at %s, after it", q.replica, stamp(q.received), stamp(*q.answer))
		}
		latestSent := everyone.latestSent(q.sent.Add(-queryTimeBound))
		if mine := byReplica[q.replica].latestSent(q.sent); mine.After(latestSent) {
			latestSent = mine
		}
		if !latestSent.IsZero() && (q.answer == nil || q.answer.Before(latestSent.Truncate(time.Second))) {
			violations++
			t.Errorf("%s: request sent at %s says the previous query was at %s, but one answered before was sent at %s",
				q.replica, stamp(q.sent), show(q.answer), stamp(latestSent))
		}
		if violations > 10 {
			t.Fatal("and more")
		}
	}
	t.Logf("%d answers checked", len(all))
	if len(all) < 300 {
		t.Errorf("only %d queries in %v", len(all), duration)
	}
}

// exchange is one GET / as a client saw it.
type exchange struct {
	replica        string
	sent, received time.Time
	answer         *time.Time // the timestamp, nil for null
}

// answered is exchanges in the order their answers were received, with
// the latest sending time among each one and those before it.
type answered struct {
	received, maxSent []time.Time
}

func answeredBefore(qs []exchange) answered {
	slices.SortFunc(qs, func(x, y exchange) int { return x.received.Compare(y.received) })
	var a answered
	var latest time.Time
	for _, q := range qs {
		if q.sent.After(latest) {
			latest = q.sent
		}
		a.received = append(a.received, q.received)
		a.maxSent = append(a.maxSent, latest)
	}
	return a
}

// latestSent returns the latest sending time of the exchanges answered
// before t (zero if none).
func (a answered) latestSent(t time.Time) time.Time {
	i, _ := slices.BinarySearchFunc(a.received, t, func(r, t time.Time) int { return r.Compare(t) })
	if i == 0 {
		return time.Time{}
	}
	return a.maxSent[i-1]
}

// servedIn reports whether ts, a timestamp at one-second resolution, is
// the time the server answered q at: some instant between sent and
// received.
func (q exchange) servedIn(ts time.Time) bool {
	return !ts.Before(q.sent.Truncate(time.Second)) && !ts.After(q.received)
}

// queryClient keeps a connection per client of the tests.
var queryClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}

// getTimestamp sends GET / to addr and returns what happened.
func getTimestamp(addr string) (exchange, error) {
	q := exchange{replica: addr, sent: time.Now()}
	resp, err := queryClient.Get("http://" + addr + "/")
	if err != nil {
		return q, err
	}
	defer resp.Body.Close()
	var body struct{ Timestamp *string }
	err = json.NewDecoder(resp.Body).Decode(&body)
	q.received = time.Now()
	if err != nil {
		return q, fmt.Errorf("GET / on %s: %s: %w", addr, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return q, fmt.Errorf("GET / on %s: %s", addr, resp.Status)
	}
	if body.Timestamp != nil {
		ts, err := time.Parse(time.DateTime, *body.Timestamp)
		if err != nil {
			return q, fmt.Errorf("GET / on %s: timestamp %q: %w", addr, *body.Timestamp, err)
		}
		q.answer = &ts
	}
	return q, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.DateTime + ".000") }

func show(t *time.Time) string {
	if t == nil {
		return "null"
	}
	return t.UTC().Format(time.DateTime)
}
