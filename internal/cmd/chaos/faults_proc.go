package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// Faults of the replicas themselves: killed, stopped, or unable to write.

// leaderKill SIGKILLs the leader of two replicas mid-cycle and times the
// other's takeover.
func leaderKill(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 2); err != nil {
		return err
	}
	leader, err := x.leader(ctx)
	if err != nil {
		return err
	}
	x.prober.drop(leader) // killed on purpose: its refusals are not the invariant's
	if err := x.waitMidCycle(ctx, "rolling"); err != nil {
		return err
	}
	x.faultBegins(ctx)
	leader.signal(syscall.SIGKILL)
	leader.waitExit(5 * time.Second)
	x.faultEnds()
	x.res.didf("2 replicas, rolling; SIGKILL to the leader (%s) mid-cycle", leader.name)
	x.takeover(ctx, leader)
	x.conclude(ctx, concludeOpts{})
	return nil
}

// takeover checks that a replica other than old leads within three leader
// polls (2 s each), and times it from the fault's end.
func (x *sc) takeover(ctx context.Context, old *replica) {
	next, at, err := leaderOf(ctx, x.others(old), 3*x.period)
	if err != nil {
		x.res.add(check{"failover", false, err.Error()})
		return
	}
	took := at.Sub(x.res.faultEnd)
	x.res.recovered("new leader (%s) after %.1f s", next.name, took.Seconds())
	x.res.add(check{"failover", took <= 6*time.Second, fmt.Sprintf("%s leads %.1f s after (bound: 6 s)", next.name, took.Seconds())})
}

// sigterm sends SIGTERM to the leader of two replicas in the middle of a
// cycle: it must exit 0 within 5 s, and the data stay consistent.
func sigterm(mode string) func(context.Context, *sc) error {
	return func(ctx context.Context, x *sc) error {
		if err := x.start(ctx, mode, 2); err != nil {
			return err
		}
		leader, err := x.leader(ctx)
		if err != nil {
			return err
		}
		x.prober.drop(leader)
		if err := x.waitMidCycle(ctx, mode); err != nil {
			return err
		}
		x.faultBegins(ctx)
		leader.signal(syscall.SIGTERM)
		exited := leader.waitExit(15 * time.Second)
		x.faultEnds()
		took := x.res.faultEnd.Sub(x.res.faultStart)
		x.res.didf("2 replicas, %s; SIGTERM to the leader (%s) mid-cycle", mode, leader.name)
		switch {
		case !exited:
			x.res.add(check{"shutdown", false, "still running 15 s after SIGTERM"})
		default:
			ok := leader.exitCode == 0 && took <= 5500*time.Millisecond
			x.res.add(check{"shutdown", ok, fmt.Sprintf("exited with status %d after %.2f s (bound: status 0 within 5 s)", leader.exitCode, took.Seconds())})
		}
		x.takeover(ctx, leader)
		x.conclude(ctx, concludeOpts{})
		if lines := logLines(leader.logPath, x.res.faultStart, time.Now(), "ERROR"); len(lines) > 0 {
			x.res.notef("%s logged %d ERROR lines while shutting down, first: %s", leader.name, len(lines), lines[0])
		}
		return nil
	}
}

// readOnlyReplica starts a replica whose role may only read first, so that
// it takes the leader lock, then a normal one: the normal replica must end
// up leading and cycles must go on.
func readOnlyReplica(ctx context.Context, x *sc) error {
	db := x.e.pg.db
	for _, stmt := range []string{
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ro') THEN
				CREATE ROLE ro LOGIN PASSWORD 'ro';
			END IF;
		END $$`,
		`GRANT CONNECT ON DATABASE ` + dbName + ` TO ro`,
		`GRANT USAGE ON SCHEMA public TO ro`,
		`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ro`,
		`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ro`,
	} {
		if _, err := db.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(stmt)[0], err)
		}
	}
	roURL := strings.Replace(x.e.pg.url, "://postgres@", "://ro:ro@", 1)
	ro, err := x.e.startReplica(ctx, "rolling", roURL)
	if ro == nil {
		return err // not even a process: the harness's failure
	}
	x.replicas = append(x.replicas, ro)
	roStarted := err == nil
	switch {
	case err != nil:
		x.res.notef("the read-only replica did not start: %v", err)
	default:
		if _, _, err := leaderOf(ctx, []*replica{ro}, 10*time.Second); err != nil {
			x.res.notef("the read-only replica (%s) did not lead (%v)", ro.name, err)
		} else {
			x.res.notef("the read-only replica (%s) took the leader lock first", ro.name)
		}
	}
	x.faultBegins(ctx)
	normal, err := x.e.startReplica(ctx, "rolling", x.e.pg.url)
	if normal != nil {
		x.replicas = append(x.replicas, normal)
	}
	if err != nil {
		return err
	}
	if err := normal.waitHTTP(ctx, "/readyz", 15*time.Second); err != nil {
		return err
	}
	x.faultEnds()
	x.prober = startProber(ctx, x.others(nil)...)
	x.res.didf("role `ro` (SELECT, EXECUTE only); replica %s as `ro` started first, then %s as a normal role", ro.name, normal.name)
	var firstDue time.Time
	if _, at, err := leaderOf(ctx, []*replica{normal}, 4*x.period); err != nil {
		x.res.add(check{"leader", false, fmt.Sprintf("the normal replica %s did not lead within %s", normal.name, 4*x.period)})
		firstDue = x.res.faultEnd.Add(x.period + 2*time.Second)
	} else {
		took := at.Sub(x.res.faultEnd)
		x.res.recovered("normal replica leads after %.1f s", took.Seconds())
		x.res.add(check{"leader", true, fmt.Sprintf("the normal replica %s leads %.1f s after it started", normal.name, took.Seconds())})
		firstDue = at.Add(x.period + 2*time.Second)
	}
	x.conclude(ctx, concludeOpts{firstDue: firstDue})
	// A replica that may not write still serves reads (docs/OPERATIONS.md:
	// "answers queries but never leads").
	switch code, _, err := ro.get(ctx, "/"); {
	case !roStarted:
		x.res.add(check{"reader", false, fmt.Sprintf("the read-only replica exited at startup (status %d): %s", ro.exitCode, ro.lastLog())})
	case err != nil || code != 200:
		x.res.add(check{"reader", false, fmt.Sprintf("the read-only replica does not answer GET /: %d %v", code, err)})
	default:
		x.res.add(check{"reader", true, "the read-only replica answers GET / 200"})
	}
	if lines := logLines(ro.logPath, x.res.faultStart, time.Now(), "ERROR"); len(lines) > 0 {
		x.res.notef("%s logged %d ERROR lines, first: %s", ro.name, len(lines), lines[0])
	}
	return nil
}
