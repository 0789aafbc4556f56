package updater_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/internal/testhook"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newUpdater builds an updater on pool with fresh metrics, quiet logs and
// fast leader polling; cfg's other fields are kept.
func newUpdater(t *testing.T, pool *pgxpool.Pool, cfg updater.Config) (*updater.Updater, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	cfg.Pool, cfg.Metrics = pool, m
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.LeaderPoll == 0 {
		cfg.LeaderPoll = 100 * time.Millisecond
	}
	if cfg.LeaseTimeout == 0 {
		// Long, unless a test is about it: a busy test machine must not
		// make a healthy leader look stale.
		cfg.LeaseTimeout = 5 * time.Second
	}
	r := &recorder{changed: make(chan struct{})}
	cfg.TestHook = testhook.New(r.record)
	u, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	recorders.Store(u, r)
	return u, m
}

// sessionPool is a pool on url configured as pointsd serve configures the
// updater's: sessions named name, bounded by limits.
func sessionPool(t *testing.T, url, name string, limits pgsql.Limits) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pgsql.ConfigureSession(cfg.ConnConfig, name, true, limits)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// recorders holds each test updater's events.
var recorders sync.Map // *updater.Updater → *recorder

// recorder keeps an updater's events for tests to wait on.
type recorder struct {
	mu      sync.Mutex
	events  []updater.Event
	changed chan struct{} // closed and replaced at every event
}

func (r *recorder) record(e updater.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitEvents waits until u has told n events that match since it was made,
// and returns the nth; it fails t after timeout. Waiting on what the updater
// says it did, not on the database's state, keeps tests from guessing how
// long things take.
func waitEvents(t *testing.T, u *updater.Updater, timeout time.Duration, what string, n int, match func(updater.Event) bool) updater.Event {
	t.Helper()
	e, _ := waitAny(t, []*updater.Updater{u}, timeout, what, n, match)
	return e
}

// waitAny is waitEvents over several updaters' events together: it returns
// the nth that matches, from whichever told it, and which one did.
func waitAny(t *testing.T, us []*updater.Updater, timeout time.Duration, what string, n int, match func(updater.Event) bool) (updater.Event, *updater.Updater) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		seen, e, u, changed := scan(us, n, match)
		if seen == n {
			return e, u
		}
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline)}}
		for _, c := range changed {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
		}
		if chosen, _, _ := reflect.Select(cases); chosen == 0 {
			t.Fatalf("after %v: %s (%d of %d events)", timeout, what, seen, n)
		}
	}
}

// countEvents counts the events of us that match, so far.
func countEvents(us []*updater.Updater, match func(updater.Event) bool) int {
	seen, _, _, _ := scan(us, -1, match)
	return seen
}

// scan counts the events of us that match, stopping at the nth (n < 0: all),
// and returns it and its updater, with the channels that close at the next
// event of each updater.
func scan(us []*updater.Updater, n int, match func(updater.Event) bool) (seen int, nth updater.Event, from *updater.Updater, changed []chan struct{}) {
	for _, u := range us {
		v, _ := recorders.Load(u)
		r := v.(*recorder)
		r.mu.Lock()
		for _, e := range r.events {
			if match(e) {
				if seen++; seen == n {
					r.mu.Unlock()
					return seen, e, u, nil
				}
			}
		}
		changed = append(changed, r.changed)
		r.mu.Unlock()
	}
	return seen, updater.Event{}, nil, changed
}

// kind matches events of kind k.
func kind(k updater.EventKind) func(updater.Event) bool {
	return func(e updater.Event) bool { return e.Kind == k }
}

// runInBackground runs u.Run until the returned stop is called (or the test
// ends); stop reports how long Run took to return.
func runInBackground(t *testing.T, u *updater.Updater) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.Run(ctx)
	}()
	stopped := false
	stop = func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		start := time.Now()
		cancel()
		<-done
		return time.Since(start)
	}
	t.Cleanup(func() { stop() })
	return stop
}

func readState(t *testing.T, db pgsql.DBTX) pointsd.State {
	t.Helper()
	st, err := pgsql.ReadState(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// mispredicted counts users whose points are not the draw for seed.
func mispredicted(t *testing.T, db pgsql.DBTX, seed int64) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(),
		`SELECT count(*) FROM users WHERE points <> pointsd_draw(id, $1)`, seed).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// mixedBuckets counts partitions whose users do not all share one
// updated_at: a bucket caught half-updated.
func mixedBuckets(t *testing.T, db pgsql.DBTX) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), `
		SELECT count(*) FROM (
			SELECT tableoid FROM users GROUP BY tableoid HAVING count(DISTINCT updated_at) > 1
		) AS mixed`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// seededRand returns two identical random sources: one for the updater,
// one for the test to predict its draws.
func seededRand() (*rand.Rand, *rand.Rand) {
	//nolint:gosec // G404: reproducible on purpose
	return rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 2))
}
