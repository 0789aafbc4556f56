package citustest_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/citustest"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/internal/testhook"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// events records an updater's events for a test to wait on.
type events struct {
	mu      sync.Mutex
	all     []updater.Event
	changed chan struct{} // closed and replaced at every event
}

func (r *events) record(e updater.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait waits for the first event that matches, failing t after timeout.
func (r *events) wait(t *testing.T, timeout time.Duration, what string, match func(updater.Event) bool) updater.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for _, e := range r.all {
			if match(e) {
				r.mu.Unlock()
				return e
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("after %v: %s", timeout, what)
		}
	}
}

// newUpdater builds an updater on a pool of its own, recording its events.
func newUpdater(t *testing.T, url string, cfg updater.Config) (*updater.Updater, *events, *metrics.Metrics) {
	t.Helper()
	pool := pgtest.Pool(t, url)
	r := &events{changed: make(chan struct{})}
	cfg.Pool, cfg.Metrics, cfg.Logger, cfg.TestHook = pool, metrics.New(), quiet, testhook.New(r.record)
	if cfg.LeaderPoll == 0 {
		cfg.LeaderPoll = 100 * time.Millisecond
	}
	u, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u, r, cfg.Metrics
}

// runInBackground runs u.Run until the returned stop is called (or t ends).
func runInBackground(t *testing.T, u *updater.Updater) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// finished matches a finished cycle numbered at least n.
func finished(n int64) func(updater.Event) bool {
	return func(e updater.Event) bool { return e.Kind == updater.EventCycleFinished && e.Cycle >= n }
}

// allBucketsAt fails t unless every bucket was rewritten in the state's
// current cycle, with its seed.
func allBucketsAt(t *testing.T, db pgsql.DBTX) pointsd.State {
	t.Helper()
	st, err := pgsql.ReadState(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	var off int
	if err := db.QueryRow(context.Background(),
		`SELECT count(*) FROM buckets WHERE cycle <> $1 OR seed <> $2`, st.Cycle, st.Seed).Scan(&off); err != nil {
		t.Fatal(err)
	}
	if off != 0 || st.BucketsDone != st.BucketsTotal {
		t.Errorf("cycle %d: %d buckets not rewritten with its seed (%d of %d done)", st.Cycle, off, st.BucketsDone, st.BucketsTotal)
	}
	return st
}

// recovered fails t unless the database at pool is whole after a fault
// (after says which): no two-phase commit left prepared on the workers
// within 15 s (Citus's recovery, citus.recover_2pc_interval, finishes what
// a lost worker kept; until then the coordinator already counts the bucket
// as rewritten), every bucket rewritten in the current cycle, every user on
// its bucket's draw, and all users there.
func recovered(t *testing.T, pool pgsql.DBTX, after string) {
	t.Helper()
	pgtest.Eventually(t, 15*time.Second, "no two-phase commit is left prepared", func() bool {
		return citustest.PreparedOnWorkers(t, pool) == 0
	})
	allBucketsAt(t, pool)
	if n := citustest.OffDraw(t, pool); n != 0 {
		t.Errorf("%d users off their bucket's draw %s", n, after)
	}
	var count int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM users`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != users {
		t.Errorf("%d users %s, want %d", count, after, users)
	}
}
