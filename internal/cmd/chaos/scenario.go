package main

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// scenario is one fault of the matrix.
type scenario struct {
	name  string // for -only
	title string
	run   func(context.Context, *sc) error
}

// result is what a scenario did and found.
type result struct {
	name, title string
	did         []string // what was done, with the numbers of this run
	started     time.Time
	faultStart  time.Time
	faultEnd    time.Time
	ended       time.Time
	recovery    []string // "GET / 0.42 s", "new leader 1.9 s", …
	clients     tally    // the normal clients (prober)
	checks      []check
	notes       []string
	logs        []logCount
	err         error // the harness could not run the scenario to its end
}

func (r *result) pass() bool {
	if r.err != nil {
		return false
	}
	for _, c := range r.checks {
		if !c.ok {
			return false
		}
	}
	return true
}

func (r *result) verdict() string {
	switch {
	case r.err != nil:
		return "ERROR"
	case r.pass():
		return "PASS"
	}
	return "FAIL"
}

func (r *result) add(c check)                   { r.checks = append(r.checks, c) }
func (r *result) didf(format string, a ...any)  { r.did = append(r.did, fmt.Sprintf(format, a...)) }
func (r *result) notef(format string, a ...any) { r.notes = append(r.notes, fmt.Sprintf(format, a...)) }
func (r *result) recovered(format string, a ...any) {
	r.recovery = append(r.recovery, fmt.Sprintf(format, a...))
}

// sc is a scenario in progress: its replicas, its normal client, the fault's
// bounds.
type sc struct {
	e        *env
	res      *result
	period   time.Duration
	prober   *prober
	replicas []*replica
	users    int64     // users the scenario runs with (0: the run's -users)
	watcher  *watcher  // when each change became visible, for the truth check
	running  int64     // the cycle unfinished when the fault began, 0 if none
	strictAt time.Time // the boundary of the strict cycle caught running
}

// start brings up n replicas in mode (one after the other, so the first
// leads), waits until each is ready and one leads, and starts the normal
// client on all of them.
func (x *sc) start(ctx context.Context, mode string, n int) error {
	specs := make([]replicaSpec, n)
	for i := range specs {
		specs[i] = replicaSpec{mode: mode, dbURL: x.e.pg.url}
	}
	return x.startSpecs(ctx, specs...)
}

// startSpecs is start with a spec per replica.
func (x *sc) startSpecs(ctx context.Context, specs ...replicaSpec) error {
	for _, spec := range specs {
		r, err := x.e.startReplicaSpec(ctx, spec)
		if r != nil {
			x.replicas = append(x.replicas, r)
		}
		if err != nil {
			return err
		}
		if err := r.waitHTTP(ctx, "/readyz", 15*time.Second); err != nil {
			return err
		}
	}
	if _, _, err := leaderOf(ctx, x.replicas, 15*time.Second); err != nil {
		return err
	}
	x.prober = startProber(ctx, x.replicas...)
	return nil
}

// leader is the replica that says it leads.
func (x *sc) leader(ctx context.Context) (*replica, error) {
	r, _, err := leaderOf(ctx, x.replicas, 10*time.Second)
	return r, err
}

// others are the live replicas other than r.
func (x *sc) others(r *replica) []*replica {
	var out []*replica
	for _, o := range x.replicas {
		if o != r && o.alive() {
			out = append(out, o)
		}
	}
	return out
}

// waitMidCycle returns in the middle of a cycle: for rolling, once a cycle
// begun at the current boundary is 45% through its period and unfinished;
// for strict, while the transaction rewriting every user is running (seen
// in pg_stat_activity). It waits at most three periods.
func (x *sc) waitMidCycle(ctx context.Context, mode string) error {
	db := x.e.pg.db
	deadline := time.Now().Add(3 * x.period)
	if mode == "strict" {
		for time.Now().Before(deadline) {
			var n int
			err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'active'
				  AND query ~* '^\s*UPDATE\s+users\s+SET'`).Scan(&n)
			if err == nil && n > 0 {
				x.strictAt = floorBoundary(time.Now(), x.period)
				return nil
			}
			if !sleepCtx(ctx, 2*time.Millisecond) {
				return ctx.Err()
			}
		}
		return fmt.Errorf("no strict cycle seen running within %s", 3*x.period)
	}
	for time.Now().Before(deadline) {
		st, err := readState(ctx, db)
		now := time.Now()
		in := now.Sub(st.StartedAt)
		if err == nil && st.Cycle > 0 && st.StartedAt.Equal(floorBoundary(now, x.period)) && st.FinishedAt == nil &&
			in >= x.period*45/100 && in < x.period*60/100 && st.BucketsDone > 0 && st.BucketsDone < st.BucketsTotal {
			x.res.notef("fault in cycle %d, %d of %d buckets done", st.Cycle, st.BucketsDone, st.BucketsTotal)
			return nil
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("no rolling cycle seen midway within %s", 3*x.period)
}

// waitCycles waits until n cycles have finished from now (at most n+2
// periods): a healthy cluster to break.
func (x *sc) waitCycles(ctx context.Context, n int) error {
	since := time.Now()
	deadline := since.Add(time.Duration(n+2) * x.period)
	for time.Now().Before(deadline) {
		evs, _ := readHistory(ctx, x.e.pg.db, since)
		done := 0
		for _, ev := range evs {
			if ev.FinishedAt != nil && ev.Op != "DELETE" {
				done++
			}
		}
		if done >= n {
			return nil
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%d cycles did not finish within %s", n, time.Duration(n+2)*x.period)
}

// faultBegins records the fault's start and the cycle it interrupts.
func (x *sc) faultBegins(ctx context.Context) {
	if st, err := readState(ctx, x.e.pg.db); err == nil && st.FinishedAt == nil {
		x.running = st.Cycle
	}
	x.res.faultStart = time.Now()
}

func (x *sc) faultEnds() { x.res.faultEnd = time.Now() }

// concludeOpts adjusts the end of a scenario.
type concludeOpts struct {
	// firstDue: every boundary from here on must start a cycle (zero: one
	// period and 2 s after GET / answered 200 again).
	firstDue time.Time
	// since: cycles recorded from here on must finish (zero: the fault's
	// start).
	since time.Time
	// noRunning: the cycle running at the fault need not finish (the fault
	// destroyed it on purpose).
	noRunning bool
	// cutShort: cycles the leader logs as cut short by a held lock need
	// not finish (a lock another session holds for periods).
	cutShort bool
}

// conclude waits for recovery and the observation window after it, then
// checks every invariant.
func (x *sc) conclude(ctx context.Context, o concludeOpts) {
	r := x.res
	if r.faultEnd.IsZero() {
		x.faultEnds()
	}
	rec, ok := x.prober.firstOK(ctx, "/", r.faultEnd, time.Minute)
	if ok {
		r.recovered("GET / 200 after %.2f s", rec.Sub(r.faultEnd).Seconds())
	} else {
		rec = time.Now()
	}
	r.add(check{"recovery", ok, map[bool]string{true: "GET / answered 200 again", false: "no 200 on GET / within 1 min of the fault's end"}[ok]})
	if span, n := x.prober.failingSpan(r.faultStart, rec.Add(time.Second)); n > 0 {
		r.notef("GET / failed %d times over %.1f s", n, span.Seconds())
	}
	firstDue := o.firstDue
	if firstDue.IsZero() {
		firstDue = rec.Add(x.period + 2*time.Second)
	}
	since := o.since
	if since.IsZero() {
		since = r.faultStart
	}
	// Two boundaries from firstDue: the first one's cycle finished, the
	// second one's started. A long fault may have covered more already.
	end := ceilBoundary(firstDue, x.period).Add(x.period + 1500*time.Millisecond)
	if late := time.Now().Add(-500 * time.Millisecond); end.Before(late) {
		end = late
	}
	if !sleepCtx(ctx, time.Until(end)) {
		return
	}
	db := x.e.pg.db
	r.add(checkUsers(ctx, db, cmp.Or(x.users, x.e.cfg.users)))
	r.add(checkDraws(ctx, db))
	r.add(checkBuckets(ctx, db, ceilBoundary(firstDue, x.period)))
	w := cycleWindow{since: since, firstDue: firstDue, end: end, period: x.period, finishDue: x.period + time.Second}
	if !o.noRunning {
		w.running = x.running
	}
	if o.cutShort {
		w.cutShort = x.cutShort()
	}
	ck, evs := checkCycles(ctx, db, w)
	r.add(ck)
	if !x.strictAt.IsZero() {
		x.noteStrict(evs)
	}
	if t, ok := firstFinish(evs, r.faultEnd); ok {
		r.recovered("next cycle finished after %.1f s", t.Sub(r.faultEnd).Seconds())
	}
	x.prober.stop()
	r.clients = x.prober.tally(time.Time{}, time.Time{})
	r.add(checkClients("clients", r.clients))
	r.add(checkTruth(ctx, db, x.prober.snapshot(), x.watcher.stop()))
	r.add(checkStaleWrites(ctx, db, r.started))
	r.add(checkResources(ctx, x.replicas))
}

// describeDetails lists the normal clients' non-200 answers.
func describeDetails(t tally) string {
	if len(t.details) == 0 {
		return ""
	}
	return "non-200s: " + t.topDetails(4)
}

// noteStrict says what became of the strict cycle caught running at the
// fault. A start is recorded inside the cycle's transaction, at its
// beginning: a recorded start from before the fault is the original
// transaction, committed; one from after is a retry; none, a rollback.
func (x *sc) noteStrict(evs []cycleEvent) {
	for _, ev := range evs {
		if !ev.Start || ev.StartedAt == nil || !ev.StartedAt.Equal(x.strictAt) {
			continue
		}
		if ev.At.Before(x.res.faultStart) {
			x.res.notef("the strict cycle of %s, caught running, committed before the fault took effect", clock(x.strictAt))
		} else {
			x.res.notef("the strict cycle of %s, caught running, rolled back and was run again at %s", clock(x.strictAt), clock(ev.At))
		}
		return
	}
	x.res.notef("the strict cycle of %s, caught running (pg_stat_activity), rolled back and was not run again", clock(x.strictAt))
}
