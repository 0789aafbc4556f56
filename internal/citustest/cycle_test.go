package citustest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/internal/citustest"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/updater"
)

const users = 20_000

// Rolling and strict cycles on Citus rewrite every user exactly once, each
// with its bucket's draw, and leave no two-phase commit half done.
func TestRollingAndStrictCycles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{Partitions: 4, Users: users})
	pool := pgtest.Pool(t, url)
	if n := citustest.OffDraw(t, pool); n != 0 {
		t.Fatalf("%d users off their draw after seeding", n)
	}
	for _, mode := range []pointsd.Mode{pointsd.Rolling, pointsd.Strict, pointsd.Rolling} {
		u, _, _ := newUpdater(t, url, updater.Config{Mode: mode})
		res, err := u.RunCycle(ctx)
		if err != nil {
			t.Fatalf("%s cycle: %v", mode, err)
		}
		if res.Rows != users {
			t.Errorf("%s cycle %d rewrote %d users, want %d", mode, res.Cycle, res.Rows, users)
		}
		st := allBucketsAt(t, pool)
		if st.Mode != mode || st.FinishedAt == nil {
			t.Errorf("state after the %s cycle: mode %s, finished %v", mode, st.Mode, st.FinishedAt)
		}
		if n := citustest.OffDraw(t, pool); n != 0 {
			t.Errorf("after %s cycle %d: %d users off their bucket's draw", mode, res.Cycle, n)
		}
		var stale int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE points <> pointsd_draw(id, $1)`, st.Seed).Scan(&stale); err != nil {
			t.Fatal(err)
		}
		if stale != 0 {
			t.Errorf("after %s cycle %d: %d users not drawn with its seed", mode, res.Cycle, stale)
		}
	}
	if n := citustest.PreparedOnWorkers(t, pool); n != 0 {
		t.Errorf("%d prepared transactions left on the workers", n)
	}
}

// Two updaters on one Citus coordinator: one leads (the advisory lock lives
// on the coordinator), and when it stops the other takes over and the
// cycles go on, every bucket rewritten once per cycle.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	url := citustest.NewDB(t, citustest.Options{Partitions: 4, Users: users})
	pool := pgtest.Pool(t, url)
	cfg := updater.Config{Period: 500 * time.Millisecond}
	a, ea, _ := newUpdater(t, url, cfg)
	stopA := runInBackground(t, a)
	first := ea.wait(t, 10*time.Second, "a finishes a cycle", finished(1))
	b, eb, _ := newUpdater(t, url, cfg)
	stopB := runInBackground(t, b)
	if leader, _ := b.LeaderStatus(); leader {
		t.Fatal("b leads while a does")
	}
	stopA()
	next := eb.wait(t, 10*time.Second, "b takes over and finishes a cycle", finished(first.Cycle+1))
	stopB()
	if leader, _ := b.LeaderStatus(); leader {
		t.Error("b still leads after stopping")
	}
	st := allBucketsAt(t, pool)
	if st.Cycle < next.Cycle {
		t.Errorf("state at cycle %d, b finished %d", st.Cycle, next.Cycle)
	}
	if n := citustest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw after the failover", n)
	}
}

// A worker that crashes in the middle of a rolling cycle makes the
// coordinator unready (/readyz 503, naming the worker); nothing is half applied (each
// bucket's two-phase commit completes or never happened); when it is back
// the cycle resumes and ends with every bucket rewritten once.
func TestWorkerCrashMidCycle(t *testing.T) {
	// Not parallel: it takes a worker of the shared cluster down.
	url := citustest.NewDB(t, citustest.Options{Partitions: 8, Users: users})
	pool := pgtest.Pool(t, url)
	u, ev, m := newUpdater(t, url, updater.Config{Period: 2 * time.Second, Workers: 1})
	stop := runInBackground(t, u)
	bucket := ev.wait(t, 15*time.Second, "a bucket commits", func(e updater.Event) bool {
		return e.Kind == updater.EventBucket && e.Bucket >= 1
	})

	api, err := httpapi.New(httpapi.Config{Pool: pgtest.Pool(t, url), Metrics: metrics.New(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()

	restart := citustest.CrashWorker(t, 2)
	var body struct {
		Error    string   `json:"error"`
		Problems []string `json:"problems"`
	}
	code, _ := get(t, srv.URL+"/readyz", &body)
	port := strconv.Itoa(citustest.WorkerPort(2))
	if code != http.StatusServiceUnavailable || len(body.Problems) != 1 || !strings.Contains(body.Problems[0], "127.0.0.1:"+port) {
		t.Errorf("/readyz with worker 2 down: %d %+v, want 503 naming 127.0.0.1:%s", code, body, port)
	}
	restart()
	pgtest.Eventually(t, 10*time.Second, "/readyz is 200 again", func() bool {
		code, _ := get(t, srv.URL+"/readyz", nil)
		return code == http.StatusOK
	})

	ev.wait(t, 20*time.Second, "a cycle after the crash finishes", finished(bucket.Cycle+1))
	stop()
	if n := testutil.ToFloat64(m.UpdateErrors); n == 0 {
		t.Error("no bucket transaction failed: the crash missed the cycle")
	}
	recovered(t, pool, "after the crash")
}
