package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Faults of the data: state edited or destroyed by hand.

// futureStart moves cycle_state.started_at an hour ahead, as a clock gone
// wrong or a hand edit would: cycles must go on within about a period, and
// the leader must say something is wrong.
func futureStart(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 1); err != nil {
		return err
	}
	// Mid-cycle: the leader reads the edited row when the cycle ends, to
	// schedule the next one (between cycles it sleeps on a boundary it
	// computed already, and the next start would overwrite the edit).
	if err := x.waitMidCycle(ctx, "rolling"); err != nil {
		return err
	}
	x.faultBegins(ctx)
	var cycle int64
	if err := x.e.pg.db.QueryRow(ctx, `UPDATE cycle_state SET started_at = started_at + interval '1 hour'
		RETURNING cycle`).Scan(&cycle); err != nil {
		return err
	}
	x.faultEnds()
	x.res.didf("1 replica, rolling; `UPDATE cycle_state SET started_at = started_at + interval '1 hour'` (cycle %d)", cycle)
	x.conclude(ctx, concludeOpts{firstDue: x.res.faultEnd.Add(x.period + 2*time.Second)})
	var warned []string
	for _, r := range x.replicas {
		warned = append(warned, logLines(r.logPath, x.res.faultStart, time.Now(), "WARN", "ERROR")...)
	}
	if len(warned) == 0 {
		x.res.add(check{"warning", false, "no WARN or ERROR line logged after the edit"})
	} else {
		x.res.add(check{"warning", true, fmt.Sprintf("%d WARN/ERROR lines after the edit, first: %s", len(warned), warned[0])})
	}
	return nil
}

// damage breaks the database in one of three ways under one replica:
// /readyz must turn 503 with a reason, and `pointsd migrate` then `pointsd
// seed -users N` must repair it.
func damage(kind string) func(context.Context, *sc) error {
	return func(ctx context.Context, x *sc) error {
		if err := x.start(ctx, "rolling", 1); err != nil {
			return err
		}
		r := x.replicas[0]
		if err := x.waitCycles(ctx, 1); err != nil {
			return err
		}
		x.faultBegins(ctx)
		what, err := breakDB(ctx, x, kind)
		if err != nil {
			return err
		}
		x.res.didf("1 replica, rolling; %s", what)

		code, reason := waitNotReady(ctx, r, 2*x.period)
		if code == http.StatusServiceUnavailable && reason != "" {
			x.res.add(check{"readyz", true, "/readyz answered 503 " + reason})
		} else {
			x.res.add(check{"readyz", false, fmt.Sprintf("/readyz still answered %d (no 503 with a reason) %s after the damage", code, 2*x.period)})
		}

		repaired := true
		for _, args := range [][]string{{"migrate"}, {"seed", "-users", fmt.Sprint(x.e.cfg.users)}} {
			out, err := runPointsd(ctx, x.e.cfg.pointsd, x.e.pg.url, args...)
			status := "exit 0"
			if err != nil {
				status, repaired = err.Error(), false
			}
			x.res.didf("`pointsd %s`: %s: %s", strings.Join(args, " "), status, lastLine(out))
		}
		x.faultEnds()
		x.res.add(check{"repair", repaired, map[bool]string{true: "migrate and seed exited 0", false: "migrate or seed failed"}[repaired]})
		if err := r.waitHTTP(ctx, "/readyz", 15*time.Second); err != nil {
			x.res.add(check{"ready again", false, err.Error()})
		} else {
			x.res.add(check{"ready again", true, "/readyz 200 after the repair"})
		}
		x.conclude(ctx, concludeOpts{since: x.res.faultEnd, noRunning: true})
		// A cycle that met the damage (its bucket's table gone under it)
		// fails, by design: its other buckets stay, the next cycle
		// rewrites the rest. Said here, since the checks above start at
		// the repair.
		for _, l := range readLog(r.logPath) {
			if l.Msg == "cycle failed" && !l.Time.Before(x.res.faultStart) {
				_, why, _ := strings.Cut(l.Err, "ERROR: ") // PostgreSQL's words, when it said why
				x.res.notef("cycle %d failed during the damage: %s", l.Cycle, snippet([]byte(cmp.Or(why, l.Err))))
			}
		}
		return nil
	}
}

// breakDB does the damage and says what it did.
func breakDB(ctx context.Context, x *sc, kind string) (string, error) {
	db := x.e.pg.db
	switch kind {
	case "partition":
		var name string
		var users int64
		if err := db.QueryRow(ctx, `SELECT b.partition::text FROM buckets b ORDER BY b.bucket OFFSET 7 LIMIT 1`).Scan(&name); err != nil {
			return "", err
		}
		// name is regclass output: already a quoted identifier.
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+name).Scan(&users); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DROP TABLE `+name)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("drop partition %s: %w", name, err)
		}
		return fmt.Sprintf("`DROP TABLE %s` (%d users gone)", name, users), nil
	case "cycle-state":
		if _, err := db.Exec(ctx, `DELETE FROM cycle_state`); err != nil {
			return "", err
		}
		return "`DELETE FROM cycle_state`", nil
	case "cycle-backwards":
		var from, to int64
		// Never below 0: a negative cycle is another kind of damage.
		if err := db.QueryRow(ctx, `WITH old AS (SELECT cycle FROM cycle_state)
			UPDATE cycle_state SET cycle = greatest(cycle - 5, 0) RETURNING (SELECT cycle FROM old), cycle`).Scan(&from, &to); err != nil {
			return "", err
		}
		return fmt.Sprintf("`UPDATE cycle_state SET cycle = greatest(cycle - 5, 0)` (cycle %d → %d, its buckets at %d)", from, to, from), nil
	}
	return "", fmt.Errorf("unknown damage %q", kind)
}

// waitNotReady polls /readyz for up to d until it answers 503, and returns
// the last status and the reason given ("" when none).
func waitNotReady(ctx context.Context, r *replica, d time.Duration) (int, string) {
	deadline := time.Now().Add(d)
	for {
		code, body, err := r.get(ctx, "/readyz")
		if err == nil && code == http.StatusServiceUnavailable {
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				return code, ""
			}
			return code, strings.Join(strings.Fields(string(body)), " ")
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 200*time.Millisecond) {
			return code, ""
		}
	}
}
