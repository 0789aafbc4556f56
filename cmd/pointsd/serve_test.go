package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// serve started before its database stays up: /healthz 200, /readyz and
// GET / 503 JSON; once the database is up, serve migrates it and answers
// GET / without a restart.
func TestServeWaitsForTheDatabase(t *testing.T) {
	t.Parallel()
	port, _ := strconv.Atoi(strings.TrimPrefix(freeAddr(t), "127.0.0.1:"))
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	addr := freeAddr(t)
	stop := serveInBackground(t, map[string]string{"DATABASE_URL": url}, "-addr", addr)
	defer stop()

	waitStatus(t, "http://"+addr+"/healthz", http.StatusOK)
	for _, path := range []string{"/readyz", "/"} {
		resp, body := getJSON(t, "http://"+addr+path)
		if resp.StatusCode != http.StatusServiceUnavailable || body["error"] == nil {
			t.Errorf("GET %s before the database: %s %v, want 503 with a JSON error", path, resp.Status, body)
		}
	}

	pgtest.StartServer(t, pgtest.ServerDir(t), port)
	up := time.Now()
	waitStatus(t, "http://"+addr+"/", http.StatusOK)
	t.Logf("GET / answered 200 %v after the database came up", time.Since(up))
	waitStatus(t, "http://"+addr+"/readyz", http.StatusOK)
}

// The cluster's mode is switched with pointsd mode, with no restart: the
// next cycle runs in it, whichever replica leads; a replica restarted with
// an explicit -mode switches the cluster too.
func TestModeSwitchesTheWholeCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 200})
	pool := pgtest.Pool(t, url)
	env := map[string]string{"DATABASE_URL": url, "POINTSD_PERIOD": "300ms"}
	a, b := freeAddr(t), freeAddr(t)
	stopA := serveInBackground(t, env, "-addr", a)
	serveInBackground(t, env, "-addr", b)

	// waitCycleMode waits for a cycle started after now to run in mode.
	waitCycleMode := func(mode string) {
		t.Helper()
		from := readStateT(t, pool).Cycle
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := readStateT(t, pool)
			if st.Cycle > from+1 && st.Mode == pointsd.Mode(mode) && st.ClusterMode == pointsd.Mode(mode) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s cycle within 10s: %+v", mode, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCycleMode("rolling") // a new database starts in rolling

	for _, mode := range []string{"strict", "rolling"} {
		code, out, stderr := runPointsd(t, ctx, env, "mode", mode)
		if code != 0 || !strings.HasPrefix(out, "cluster mode set to "+mode+": it applies from cycle ") {
			t.Fatalf("pointsd mode %s: exit %d, %q %q", mode, code, out, stderr)
		}
		waitCycleMode(mode)
		for _, addr := range []string{a, b} {
			if _, body := getJSON(t, "http://"+addr+"/status"); body["mode"] != mode {
				t.Errorf("replica %s /status mode = %v, want %s", addr, body["mode"], mode)
			}
		}
	}
	code, out, _ := runPointsd(t, ctx, env, "mode")
	if code != 0 || !strings.Contains(out, "cluster mode:  rolling") || !strings.Contains(out, "leader:        a pointsd serve leads") {
		t.Errorf("pointsd mode: exit %d, %q", code, out)
	}

	// Replica a restarts with an explicit -mode: the cluster follows,
	// whether a or b leads.
	stopA()
	serveInBackground(t, env, "-addr", a, "-mode", "strict")
	waitCycleMode("strict")
}

func TestModeErrors(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{})
	if code, _, stderr := runPointsd(t, context.Background(), map[string]string{"DATABASE_URL": url}, "mode", "fast"); code != 2 ||
		!strings.Contains(stderr, `pointsd mode: invalid mode "fast": must be rolling or strict`) {
		t.Errorf("pointsd mode fast: exit %d, %q; want 2 and the reason", code, stderr)
	}
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
	if code, _, stderr := runPointsd(t, context.Background(), env, "mode", "strict"); code != 1 ||
		!strings.HasPrefix(stderr, "pointsd: database unreachable") {
		t.Errorf("pointsd mode strict, database down: exit %d, %q; want 1", code, stderr)
	}
}

// serveInBackground runs pointsd serve with args until the returned stop is
// called (or the test ends); serve must exit 0.
func serveInBackground(t *testing.T, env map[string]string, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, _, stderr := runPointsd(t, ctx, env, append([]string{"serve"}, args...)...); code != 0 {
			t.Errorf("serve %v: exit %d, %s", args, code, stderr)
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func getJSON(t *testing.T, url string) (response, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %s, body not JSON: %v", url, resp.Status, err)
	}
	return response{resp.StatusCode, resp.Status}, body
}

// response is what tests look at of a response whose body was read.
type response struct {
	StatusCode int
	Status     string
}

func readStateT(t *testing.T, db pgsql.DBTX) pointsd.State {
	t.Helper()
	st, err := pgsql.ReadState(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestServeNamesItsSessions checks that every session a leading serve
// opens carries its kind and the replica's instance in application_name:
// an evicting replica and a new term end the old leader's sessions by
// those names, and an operator finds them in pg_stat_activity.
func TestServeNamesItsSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 200})
	pool := pgtest.Pool(t, url)
	serveInBackground(t, map[string]string{"DATABASE_URL": url, "POINTSD_PERIOD": "300ms"}, "-addr", freeAddr(t))
	pgtest.Eventually(t, 10*time.Second, "two cycles", func() bool { return readStateT(t, pool).Cycle >= 2 })

	want := []string{pgsql.QuerySession, pgsql.LeaderSession, pgsql.UpdaterSession, pgsql.ListenSession}
	var kinds, instances map[string]bool
	pgtest.Eventually(t, 5*time.Second, "a session of each kind", func() bool {
		rows, err := pool.Query(ctx, `SELECT application_name FROM pg_stat_activity
			WHERE datname = current_database() AND application_name LIKE 'pointsd%'`)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		kinds, instances = map[string]bool{}, map[string]bool{}
		for _, n := range names {
			kind, instance, _ := strings.Cut(n, "/")
			kinds[kind], instances[instance] = true, true
		}
		for _, k := range want {
			if !kinds[k] {
				return false
			}
		}
		return true
	})
	if len(instances) != 1 || instances[""] {
		t.Errorf("sessions name the instances %v, want one (kinds %v)", instances, kinds)
	}
}
