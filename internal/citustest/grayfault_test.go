package citustest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointsd/pointsd/httpapi"
	"github.com/pointsd/pointsd/internal/citustest"
	"github.com/pointsd/pointsd/internal/faultproxy"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

// A worker cut off without a reset between a bucket's PREPARE and its
// COMMIT PREPARED: the coordinator's commit waits on the worker (Citus
// ignores a cancel there), every bucket has shards on it, so no cycle can
// run until the worker is back. What pointsd owes: /readyz names the
// worker while it lasts, no answer is untrue (200s hold their buckets'
// draws, the rest are JSON 503s), and once the path is back the cycles run
// again, with no two-phase commit left half done and every user on its
// bucket's draw. Healed two ways: the held bytes delivered (a stalled
// path), or every connection reset (TCP gave up meanwhile), which leaves
// the prepared transaction to Citus's recovery.
func TestWorkerBlackholedMidTwoPhaseCommit(t *testing.T) {
	for _, heal := range []string{"thaw", "cut"} {
		t.Run(heal, func(t *testing.T) { blackholeMidTwoPhaseCommit(t, heal) })
	}
}

// blackholeHold is how long the worker stays cut off: past the readiness
// check's connection timeout, under a bucket attempt's deadline.
const blackholeHold = 5 * time.Second

func blackholeMidTwoPhaseCommit(t *testing.T, heal string) {
	// Not parallel: the fault's timing is the test's.
	ctx := context.Background()
	p, err := faultproxy.Start(ctx, citustest.WorkerAddr(2))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	url := citustest.NewDB(t, citustest.Options{Partitions: 8, Users: users, WorkerVia: map[int]string{2: p.Addr().String()}})
	pool := pgtest.Pool(t, url)
	recordCycles(t, pool)
	u, ev, _ := newUpdater(t, url, updater.Config{Period: time.Second, Workers: 1})
	stop := runInBackground(t, u)
	ev.wait(t, 15*time.Second, "a bucket commits", func(e updater.Event) bool { return e.Kind == updater.EventBucket })

	api, err := httpapi.New(httpapi.Config{Pool: pgtest.Pool(t, url), Metrics: metrics.New(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	client := startAsking(t, srv.URL)

	tripped := p.FreezeOn([]byte("COMMIT PREPARED"))
	select {
	case <-tripped:
	case <-time.After(15 * time.Second):
		t.Fatal("no COMMIT PREPARED reached worker 2 in 15 s")
	}
	frozenAt := time.Now()
	// The coordinator can connect to nothing behind the proxy: the check
	// names the worker within its connection timeout.
	pgtest.Eventually(t, blackholeHold, "/readyz names the cut-off worker", func() bool {
		var body struct{ Problems []string }
		code, _ := get(t, srv.URL+"/readyz", &body)
		return code == http.StatusServiceUnavailable && len(body.Problems) == 1 &&
			strings.Contains(body.Problems[0], p.Addr().String()+" is unreachable")
	})
	// The fault is where it was meant to be: the worker prepared the
	// bucket's transaction and heard nothing since.
	if n := citustest.PreparedOnWorker(t, 2, url); n != 1 {
		t.Errorf("worker 2 holds %d prepared transactions while cut off, want the bucket's 1", n)
	}
	time.Sleep(time.Until(frozenAt.Add(blackholeHold)))
	st, err := pgsql.ReadState(ctx, pool) // the coordinator's own tables answer
	if err != nil {
		t.Fatal(err)
	}
	healedAt := time.Now()
	if heal == "thaw" {
		p.Thaw()
	} else {
		p.Cut()
	}

	ev.wait(t, 15*time.Second, "a cycle started after the heal finishes", finished(st.Cycle+1))
	t.Logf("%s: a cycle started after the heal finished %.1f s after it", heal, time.Since(healedAt).Seconds())
	pgtest.Eventually(t, 10*time.Second, "/readyz is 200 again", func() bool {
		code, _ := get(t, srv.URL+"/readyz", nil)
		return code == http.StatusOK
	})
	stop()
	client.check(t, pool)
	recovered(t, pool, "after the heal")
}

// asker asks GET / back to back until checked, keeping every answer.
type asker struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	answers []answer
	others  []string // responses neither 200 nor a JSON 503
}

type answer struct {
	Users []struct {
		ID     int64 `json:"id"`
		Points int64 `json:"points"`
	} `json:"users"`
}

func startAsking(t *testing.T, base string) *asker {
	t.Helper()
	a := &asker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		c := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-a.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			a.ask(c, base)
		}
	}()
	t.Cleanup(a.halt)
	return a
}

func (a *asker) ask(c *http.Client, base string) {
	resp, err := c.Get(base + "/") //nolint:noctx // a test server's URL, bounded by the client's timeout
	if err != nil {
		a.note(err.Error())
		return
	}
	defer func() { _ = resp.Body.Close() }()
	switch resp.StatusCode {
	case http.StatusOK:
		var ans answer
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			a.note("200 that is not JSON: " + err.Error())
			return
		}
		a.mu.Lock()
		a.answers = append(a.answers, ans)
		a.mu.Unlock()
	case http.StatusServiceUnavailable:
		var e struct{ Error string }
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
			a.note("503 without a JSON error")
		}
	default:
		a.note(resp.Status)
	}
}

func (a *asker) note(s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.others = append(a.others, s)
}

func (a *asker) halt() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

// recordCycles keeps every cycle's seed and floor in a table of the test's,
// cycles, from the current one on: what an answer's truth is checked
// against.
func recordCycles(t *testing.T, db pgsql.DBTX) {
	t.Helper()
	for _, stmt := range []string{
		`CREATE TABLE test_cycles (cycle bigint, seed bigint, floor int)`,
		`INSERT INTO test_cycles SELECT cycle, seed, floor FROM cycle_state`,
		`CREATE FUNCTION test_record_cycle() RETURNS trigger LANGUAGE plpgsql AS
		 $$BEGIN INSERT INTO test_cycles VALUES (NEW.cycle, NEW.seed, NEW.floor); RETURN NEW; END$$`,
		`CREATE TRIGGER test_record_cycle AFTER INSERT OR UPDATE OF cycle, seed, floor ON cycle_state
		 FOR EACH ROW EXECUTE FUNCTION test_record_cycle()`,
	} {
		if _, err := db.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// check stops asking and fails t for any response that was neither a 200
// nor a JSON 503, and for any answered user that was never true
// (recordCycles): its points must be its bucket's draw in some cycle, and
// above the floor of that cycle or a later one (mid rolling cycle, a
// bucket not rewritten yet holds the last cycle's draws under the new
// floor).
func (a *asker) check(t *testing.T, db pgsql.DBTX) {
	t.Helper()
	a.halt()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.others) > 0 {
		t.Errorf("%d responses neither 200 nor JSON 503, first: %s", len(a.others), a.others[0])
	}
	var ids, points []int64
	for _, ans := range a.answers {
		for _, u := range ans.Users {
			ids, points = append(ids, u.ID), append(points, u.Points)
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no GET / answered a user in the whole test (%d answers)", len(a.answers))
	}
	untrueOf := func(points []int64) int {
		var n int
		if err := db.QueryRow(context.Background(), `
			SELECT count(*) FROM unnest($1::bigint[], $2::bigint[]) AS a(id, points)
			WHERE NOT EXISTS (SELECT FROM test_cycles d JOIN test_cycles f ON f.cycle >= d.cycle
			                  WHERE a.points = pointsd_bucket_draw(a.id, d.cycle, d.seed) AND a.points > f.floor)`,
			ids, points).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	untrue := untrueOf(points)
	// A control: every answered user one point off must mostly come out
	// untrue (a shifted value may be the draw of another cycle by chance,
	// one in 101 per cycle recorded).
	off := make([]int64, len(points))
	for i, p := range points {
		off[i] = (p + 1) % 101
	}
	if n := untrueOf(off); n < len(ids)/2 {
		t.Errorf("control: only %d of %d answers made one point off were judged untrue", n, len(ids))
	}
	if untrue > 0 {
		t.Errorf("%d of %d answered users were true in no cycle", untrue, len(ids))
		return
	}
	t.Logf("%d answers, %d users, all true", len(a.answers), len(ids))
}

// A two-phase commit left prepared on a worker keeps its rows locked and
// holds back pruning there: the state check names it, with the worker,
// how many and since when, as an old snapshot (answers stay true, so
// /readyz stays 200), and stops once it is finished.
func TestOldPreparedTransactionOnAWorkerIsNamed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{Users: 100})
	pool := pgtest.Pool(t, url)
	// Not a Citus name, so Citus's recovery leaves it alone; rolled back
	// before the database is dropped (cleanups run last first).
	if err := citustest.ExecOnWorker(ctx, 1, url, `BEGIN; PREPARE TRANSACTION 'forgotten_by_a_test'`); err != nil {
		t.Fatal(err)
	}
	rolledBack := false
	t.Cleanup(func() {
		if !rolledBack {
			_ = citustest.ExecOnWorker(ctx, 1, url, `ROLLBACK PREPARED 'forgotten_by_a_test'`) // the test failed first
		}
	})
	addr := citustest.WorkerAddr(1)
	var named pgsql.Problem
	pgtest.Eventually(t, 20*time.Second, "the state check names the prepared transaction", func() bool {
		problems, err := pgsql.CheckState(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if strings.Contains(p.Detail, "citus worker "+addr+" has 1 two-phase commit(s)") {
				named = p
				return true
			}
		}
		return false
	})
	if named.Check != pgsql.CheckOldSnapshot || named.Damage() || !strings.Contains(named.Detail, "'forgotten_by_a_test'") {
		t.Errorf("named as %q (damage: %v): %s; want an old snapshot, not damage, naming the transaction", named.Check, named.Damage(), named.Detail)
	}
	if err := citustest.ExecOnWorker(ctx, 1, url, `ROLLBACK PREPARED 'forgotten_by_a_test'`); err != nil {
		t.Fatal(err)
	}
	rolledBack = true
	if problems, err := pgsql.CheckState(ctx, pool); err != nil || len(problems) != 0 {
		t.Errorf("after the rollback: %v, %v; want no problem", problems, err)
	}
}

// CitusInfo reads the coordinator's own settings, which Warnings judge:
// the test cluster runs with the recommended ones.
func TestCitusInfoReadsTheSettings(t *testing.T) {
	t.Parallel()
	url := citustest.NewDB(t, citustest.Options{NoMigrate: true})
	c, err := pgsql.CitusInfo(context.Background(), pgtest.Pool(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if c.RecoverInterval != "1s" || !strings.Contains(c.NodeConnInfo, "tcp_user_timeout=10000") || len(c.Warnings()) != 0 {
		t.Errorf("CitusInfo = %+v, warnings %q; want the test cluster's 1s and tcp_user_timeout=10000, no warning", c, c.Warnings())
	}
}
