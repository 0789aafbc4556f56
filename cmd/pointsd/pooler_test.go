package main

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/localpg"
	"github.com/pointsd/pointsd/internal/pgtest"
)

// bounced starts a PgBouncer in transaction pooling mode in front of
// dbURL's server and returns dbURL through it. It skips t when pgbouncer
// is not installed, unless POINTSD_REQUIRE_PGBOUNCER=1 (as in CI).
func bounced(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("test database URL %q has no port", dbURL)
	}
	b, err := localpg.StartBouncer(context.Background(), pgtest.ServerDir(t), port)
	if errors.Is(err, localpg.ErrNoBouncer) && os.Getenv("POINTSD_REQUIRE_PGBOUNCER") != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	u.Host = "127.0.0.1:" + strconv.Itoa(b.Port)
	return u.String()
}

// Behind PgBouncer in transaction mode, with POINTSD_DIRECT_URL naming
// PostgreSQL itself: both replicas become ready and answer GET / (no named
// prepared statements collide), exactly one leads, and cycles advance.
// Without POINTSD_DIRECT_URL, nobody can lead, and /readyz says why.
func TestServeBehindPgBouncer(t *testing.T) {
	t.Parallel()
	for _, direct := range []bool{true, false} {
		t.Run("direct="+strconv.FormatBool(direct), func(t *testing.T) {
			t.Parallel()
			dbURL := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 200})
			env := map[string]string{"DATABASE_URL": bounced(t, dbURL), "POINTSD_PERIOD": "300ms"}
			if direct {
				env["POINTSD_DIRECT_URL"] = dbURL
			}
			addrs := []string{freeAddr(t), freeAddr(t)}
			for _, a := range addrs {
				serveInBackground(t, env, "-addr", a)
			}
			for _, a := range addrs {
				waitStatus(t, "http://"+a+"/readyz", http.StatusOK)
				for range 20 { // many reads, over many pooled connections
					if resp, body := getJSON(t, "http://"+a+"/"); resp.StatusCode != http.StatusOK {
						t.Fatalf("GET / on %s behind PgBouncer: %s %v", a, resp.Status, body)
					}
				}
				if _, body := getJSON(t, "http://"+a+"/readyz"); !strings.Contains(body["pooler"].(string), "pooler") {
					t.Errorf("/readyz on %s does not say queries go through a pooler: %v", a, body)
				}
			}
			pool := pgtest.Pool(t, dbURL)
			from := readStateT(t, pool).Cycle
			if !direct {
				deadline := time.Now().Add(5 * time.Second)
				for {
					_, body := getJSON(t, "http://"+addrs[0]+"/readyz")
					if p, _ := body["leader_problem"].(string); strings.Contains(p, "POINTSD_DIRECT_URL") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("/readyz does not say why no replica can lead behind a pooler: %v", body)
					}
					time.Sleep(50 * time.Millisecond)
				}
				if c := readStateT(t, pool).Cycle; c != from {
					t.Errorf("cycle went from %d to %d with no direct connection to lead through", from, c)
				}
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for readStateT(t, pool).Cycle < from+3 {
				if time.Now().After(deadline) {
					t.Fatalf("cycles did not advance behind PgBouncer: still at %d", readStateT(t, pool).Cycle)
				}
				time.Sleep(50 * time.Millisecond)
			}
			leaders := 0
			for _, a := range addrs {
				if _, body := getJSON(t, "http://"+a+"/status"); body["leader"] == true {
					leaders++
				}
			}
			if leaders != 1 {
				t.Errorf("%d replicas lead, want 1", leaders)
			}
			// The query times go through the pooler, their notifications
			// through the direct connection: each replica answers the
			// other's query, a second and more after it.
			prev, err := getTimestamp(addrs[0])
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				time.Sleep(1100 * time.Millisecond)
				q, err := getTimestamp(addrs[(i+1)%2])
				if err != nil {
					t.Fatal(err)
				}
				if q.answer == nil || !prev.servedIn(*q.answer) {
					t.Errorf("query %d behind PgBouncer: timestamp %v, want the other replica's query, sent %s", i+2, show(q.answer), stamp(prev.sent))
				}
				prev = q
			}
		})
	}
}
