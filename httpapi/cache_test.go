package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

func TestStableUntilFollowsThePublishedSchedule(t *testing.T) {
	start := time.Date(2020, 7, 30, 17, 9, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	done := func(bucket int) pointsd.User { return pointsd.User{Bucket: bucket, BucketCycle: 7} }
	pending := func(bucket int) pointsd.User { return pointsd.User{Bucket: bucket, BucketCycle: 6} }
	next := start.Add(time.Minute)
	base := pointsd.Answer{Buckets: 60, FirstPending: 30,
		Schedule: pointsd.Schedule{Cycle: 7, Floor: 40, Period: time.Minute, StartedAt: start, NextStart: &next}}
	for _, c := range []struct {
		name  string
		edit  func(*pointsd.Answer)
		until time.Time
	}{
		{"users in rewritten buckets hold until the next cycle",
			func(a *pointsd.Answer) { a.Users = []pointsd.User{done(0), done(3)} }, at(time.Minute)},
		{"a user in a pending bucket holds until its slot",
			func(a *pointsd.Answer) { a.Users = []pointsd.User{done(0), pending(45)} }, at(45 * time.Second)},
		{"a pending slot on a published spread",
			func(a *pointsd.Answer) { a.Spread, a.Users = 54*time.Second, []pointsd.User{done(0), pending(45)} }, at(40500 * time.Millisecond)},
		{"the earlier of two pending slots",
			func(a *pointsd.Answer) { a.Users = []pointsd.User{pending(50), pending(40)} }, at(40 * time.Second)},
		{"fewer than two users: until a pending bucket may add one",
			func(a *pointsd.Answer) { a.Users = []pointsd.User{done(0)} }, at(30 * time.Second)},
		{"fewer than two and nothing pending: until the next cycle",
			func(a *pointsd.Answer) { a.Users, a.FirstPending = []pointsd.User{}, -1 }, at(time.Minute)},
		{"floor 100: nobody can qualify until the floor changes",
			func(a *pointsd.Answer) { a.Floor, a.Users = 100, []pointsd.User{} }, at(time.Minute)},
		{"no schedule kept: not reusable",
			func(a *pointsd.Answer) { a.NextStart, a.Users = nil, []pointsd.User{done(0), done(1)} }, time.Time{}},
		{"a leader's next start, before its first cycle (fresh: nothing pending, nobody qualifies)",
			func(a *pointsd.Answer) { a.Period, a.Users, a.FirstPending = 0, []pointsd.User{}, -1 }, at(time.Minute)},
		{"a cycle run by hand: its pending buckets have no slot",
			func(a *pointsd.Answer) { a.Period, a.Users = 0, []pointsd.User{done(0)} }, time.Time{}},
		{"a cycle run by hand, finished: until the next start",
			func(a *pointsd.Answer) { a.Period, a.Users, a.FirstPending = 0, []pointsd.User{done(0), done(1)}, -1 }, at(time.Minute)},
	} {
		a := base
		c.edit(&a)
		if got := stableUntil(a); !got.Equal(c.until) {
			t.Errorf("%s: until %v, want %v", c.name, got, c.until)
		}
	}
}

// Across rolling cycles, on the leader (invalidated in-process) and on
// another replica (invalidated by NOTIFY): whenever nothing changed in the
// database between just before and just after a request, the response must
// be exactly true of that database.
func TestCachedAnswersAreTrueAcrossCycles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 2_000})
	pool := pgtest.Pool(t, url)

	leaderAPI, leaderSrv := newAPI(t, url, Config{})
	u, err := updater.New(updater.Config{Pool: pgtest.Pool(t, url), Metrics: metrics.New(), Logger: quiet,
		Period: time.Second, LeaderPoll: 100 * time.Millisecond, Listener: leaderAPI})
	if err != nil {
		t.Fatal(err)
	}
	replica, replicaSrv := newAPI(t, url, Config{})
	lctx, stopListen := context.WithCancel(ctx)
	listening := make(chan struct{})
	go func() { replica.Listen(lctx); close(listening) }()
	defer func() { stopListen(); <-listening }()
	uctx, stopUpdater := context.WithCancel(ctx)
	updating := make(chan struct{})
	go func() { u.Run(uctx); close(updating) }()
	defer func() { stopUpdater(); <-updating }()

	// snapshot reads, in one statement, what changes with every commit of
	// the updater, how many users (of at most 2) are above the floor, and
	// the points of the given users.
	type snapshot struct {
		version [3]int64
		above   int
		floor   int64
		points  map[int64]int64
	}
	read := func(ids []int64) snapshot {
		s := snapshot{points: map[int64]int64{}}
		var pts []int64
		var got []int64
		if err := pool.QueryRow(ctx, `
			SELECT s.cycle, s.floor, (SELECT sum(cycle) FROM buckets),
			       (SELECT count(*) FROM (SELECT 1 FROM users WHERE points > s.floor LIMIT 2) x),
			       coalesce((SELECT array_agg(id ORDER BY id) FROM users WHERE id = ANY($1)), '{}'),
			       coalesce((SELECT array_agg(points ORDER BY id) FROM users WHERE id = ANY($1)), '{}')
			FROM cycle_state s`, ids).Scan(&s.version[0], &s.version[1], &s.version[2], &s.above, &got, &pts); err != nil {
			t.Fatal(err)
		}
		s.floor = s.version[1]
		for i, id := range got {
			s.points[id] = pts[i]
		}
		return s
	}
	checked := map[string]int{}
	cycles := map[int64]bool{}
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		for name, base := range map[string]string{"leader": leaderSrv.URL, "replica": replicaSrv.URL} {
			before := read(nil)
			resp, err := http.Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Users []struct{ ID, Points int64 } }
			err = json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %s, %v", name, resp.Status, err)
			}
			var ids []int64
			for _, u := range body.Users {
				ids = append(ids, u.ID)
			}
			after := read(ids)
			if after.version != before.version {
				continue // a change committed during the request: either answer is fine
			}
			cycles[after.version[0]] = true
			checked[name]++
			if len(body.Users) != after.above {
				t.Fatalf("%s: %d users in the answer, the database has %d (of at most 2) above the floor", name, len(body.Users), after.above)
			}
			for _, u := range body.Users {
				if p := after.points[u.ID]; p != u.Points || p <= after.floor {
					t.Fatalf("%s, cycle %d: user %d with %d points in the answer; the database says %d points, floor %d",
						name, after.version[0], u.ID, u.Points, p, after.floor)
				}
			}
		}
	}
	if checked["leader"] < 20 || checked["replica"] < 20 || len(cycles) < 3 {
		t.Fatalf("checked %v answers over %d cycles; want at least 20 each over 3 cycles", checked, len(cycles))
	}
}

// Only a commit that can change the answer drops it.
func TestCommitInvalidatesOnlyWhatTheAnswerDependsOn(t *testing.T) {
	two := pointsd.Answer{Schedule: pointsd.Schedule{Floor: 50}, Users: []pointsd.User{{ID: 1, Bucket: 3}, {ID: 2, Bucket: 7}}}
	one := pointsd.Answer{Schedule: pointsd.Schedule{Floor: 50}, Users: []pointsd.User{{ID: 1, Bucket: 3}}}
	none := pointsd.Answer{Schedule: pointsd.Schedule{Floor: 100}, Users: []pointsd.User{}}
	for _, c := range []struct {
		ans     pointsd.Answer
		bucket  int
		dropped bool
	}{
		{two, 3, true}, {two, 7, true}, {two, 4, false}, {two, pgsql.AllBuckets, true},
		{one, 4, true},   // short of two: any bucket may bring one
		{none, 4, false}, // floor 100: no bucket can
		{none, pgsql.AllBuckets, true},
	} {
		var ca cache
		ca.current.Store(&answer{ans: c.ans})
		before := ca.gen.Load()
		ca.committed(c.bucket)
		if dropped := ca.gen.Load() != before; dropped != c.dropped {
			t.Errorf("answer %v, commit to bucket %d: dropped %v, want %v", c.ans.Users, c.bucket, dropped, c.dropped)
		}
	}
}

// On a freshly seeded database (every user at 0 points: nobody qualifies)
// a leader publishes its schedule as soon as it leads, before its first
// cycle, so that the empty answer is reused until the cycle could change
// it instead of being read (a scan of every user) per request.
func TestFreshDatabaseAnswerIsReusedOnceALeaderLeads(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 2_000})
	a, srv := newAPI(t, url, Config{CacheMaxAge: 24 * time.Hour})
	get(t, srv.URL+"/")
	if ans := a.cache.current.Load(); ans == nil || !ans.until.IsZero() {
		t.Fatalf("before any leader: answer %+v, want one that is not reusable", ans)
	}

	pool := pgtest.Pool(t, url)
	u, err := updater.New(updater.Config{Pool: pgtest.Pool(t, url), Metrics: metrics.New(), Logger: quiet,
		Period: time.Hour, LeaderPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	uctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(uctx); close(done) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	var st pointsd.State
	for {
		st, err = pgsql.ReadState(context.Background(), pool)
		if err == nil && st.NextStart != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader published no next start within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	listen(t, a)                        // reuse past unheardMaxAge needs a listener proven alive
	a.cache.committed(pgsql.AllBuckets) // as a NOTIFY would
	get(t, srv.URL+"/")
	first := a.cache.current.Load()
	if want := *st.NextStart; len(first.ans.Users) != 0 || !first.until.Equal(want) {
		t.Fatalf("after the leader published: %d users, reusable until %v; want none, until the next start %v",
			len(first.ans.Users), first.until, want)
	}
	for range 20 {
		get(t, srv.URL+"/")
	}
	if a.cache.current.Load() != first {
		t.Error("the answer was read again though the schedule says it holds")
	}
}

// An answer past -cache-max-age that the schedule says still holds is
// served while it is read again in the background: requests do not wait
// for the read (a scan of every user when nobody qualifies).
func TestAnswerPastMaxAgeIsRevalidatedInTheBackground(t *testing.T) {
	t.Parallel()
	const maxAge = 50 * time.Millisecond
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 100})
	pool := pgtest.Pool(t, url)
	if _, err := pool.Exec(context.Background(),
		`UPDATE cycle_state SET next_start = now() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	a, srv := newAPI(t, url, Config{CacheMaxAge: maxAge})
	listen(t, a)
	get(t, srv.URL+"/")
	first := a.cache.current.Load()
	if first == nil || !first.until.After(time.Now().Add(time.Minute)) {
		t.Fatalf("answer %+v: want one the schedule says holds for an hour", first)
	}
	// Block the next read until the lock is released: a request waiting for
	// it would show.
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(context.Background(), `LOCK TABLE cycle_state IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * maxAge) // the answer is now past its max age
	for range 3 {
		start := time.Now()
		get(t, srv.URL+"/")
		if took := time.Since(start); took > time.Second {
			t.Errorf("GET / past max age took %v: it waited for the read", took)
		}
	}
	if a.cache.current.Load() != first {
		t.Fatal("the answer changed while its read was blocked")
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.cache.current.Load() == first {
		if time.Now().After(deadline) {
			t.Fatal("the answer was not read again in the background")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
