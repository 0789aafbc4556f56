package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The truth check: every user in every 200 of GET / the normal clients got
// must have had those points, above the floor, at some moment while the
// request was served; an answer with fewer than two users must have been
// short of qualifiers at such a moment (truth_short.go). Points and floors are not sampled: triggers record
// each bucket's (cycle, seed) and each floor as they commit, and a user's
// points at any time are pointsd_bucket_draw(id, cycle, seed) of its
// bucket's last write before it. The same record names every bucket write
// that commits a cycle older than cycle_state's: a stale leader's.
//
// The triggers are deferred constraint triggers, so they run at commit, and
// clock_timestamp() is the commit's start, not the statement's (a strict
// UPDATE runs for a second before it commits). Readers see the change only
// once the commit's WAL is flushed: the watcher (visible.go) times that.
// The harness and the server share one clock: they run on one machine.
const truthSQL = `
CREATE TABLE IF NOT EXISTS chaos_truth (
	at          timestamptz NOT NULL DEFAULT clock_timestamp(),
	kind        text        NOT NULL CHECK (kind IN ('bucket', 'floor')),
	op          text        NOT NULL,
	part        text,     -- the bucket's partition, by name (a repair recreates it)
	cycle       bigint,   -- the cycle written
	seed        bigint,
	floor       smallint, -- null: no cycle_state row
	state_cycle bigint,   -- cycle_state.cycle as the write commits
	pid         integer   NOT NULL DEFAULT pg_backend_pid(),
	app         text      DEFAULT current_setting('application_name')
);
CREATE INDEX IF NOT EXISTS chaos_truth_at ON chaos_truth (kind, part, at);
CREATE OR REPLACE FUNCTION chaos_truth_bucket() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		INSERT INTO chaos_truth (kind, op, part) VALUES ('bucket', TG_OP, OLD.partition::text);
	ELSE
		INSERT INTO chaos_truth (kind, op, part, cycle, seed, state_cycle)
		VALUES ('bucket', TG_OP, NEW.partition::text, NEW.cycle, NEW.seed, (SELECT max(cycle) FROM cycle_state));
	END IF;
	RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION chaos_truth_floor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		INSERT INTO chaos_truth (kind, op) VALUES ('floor', TG_OP);
	ELSE
		INSERT INTO chaos_truth (kind, op, cycle, floor) VALUES ('floor', TG_OP, NEW.cycle, NEW.floor);
	END IF;
	RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS chaos_truth_bucket ON buckets;
CREATE CONSTRAINT TRIGGER chaos_truth_bucket AFTER INSERT OR UPDATE OR DELETE ON buckets
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION chaos_truth_bucket();
DROP TRIGGER IF EXISTS chaos_truth_floor ON cycle_state;
CREATE CONSTRAINT TRIGGER chaos_truth_floor AFTER INSERT OR UPDATE OR DELETE ON cycle_state
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION chaos_truth_floor();
-- Where the record starts: the state as it is now.
INSERT INTO chaos_truth (kind, op, part, cycle, seed, state_cycle)
	SELECT 'bucket', 'START', partition::text, cycle, seed, (SELECT max(cycle) FROM cycle_state) FROM buckets;
INSERT INTO chaos_truth (kind, op, cycle, floor) SELECT 'floor', 'START', cycle, floor FROM cycle_state;`

func installTruth(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, truthSQL); err != nil {
		return fmt.Errorf("install the truth record: %w", err)
	}
	return nil
}

// truthInstalled reports whether both truth triggers are in place.
func truthInstalled(ctx context.Context, db *pgxpool.Pool) bool {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM pg_trigger
		WHERE tgname IN ('chaos_truth_bucket', 'chaos_truth_floor')`).Scan(&n)
	return err == nil && n == 2
}

// unseenSlack is how long after its commit record a change the watcher
// did not see (visible.go) may still be invisible to readers: the longest
// COMMIT flush measured here, with room.
const unseenSlack = 100 * time.Millisecond

// evSQL gives each recorded change its two times: at, when it committed
// (the new state may be read from then), and vis, when the watcher first
// saw it (the old state may be read until then).
const evSQL = `INSERT INTO chaos_ev
	SELECT h.kind, h.part, h.cycle, h.seed, h.floor, h.at,
		coalesce((SELECT min(s.seen) FROM chaos_seen s
			WHERE s.kind = h.kind AND s.part IS NOT DISTINCT FROM h.part AND s.cycle = h.cycle
			  AND (h.kind = 'bucket' OR s.floor = h.floor) AND s.seen >= h.at), h.at + $1::interval) AS vis
	FROM chaos_truth h`

// truthQuery judges each answered user at the start of its request and at
// every recorded change while it was served: true if at one of them the
// user had those points, above the floor, in the state committed by then
// or in the state still visible then; unknown when the record says nothing
// of its bucket or the floor (a deleted row).
// answeredParts names each answered user's partition: its row's own, so
// that a user deleted since is not judged. On Citus a row's tableoid is a
// shard's on a worker, and users joins no local table: the partition is
// the one whose hash range holds the id.
const (
	answeredParts      = `SELECT a.*, u.tableoid::regclass::text AS part FROM chaos_answers a JOIN users u USING (id)`
	answeredPartsCitus = `SELECT a.*, (SELECT b.partition::text FROM buckets b
		WHERE satisfies_hash_partition('users'::regclass, (SELECT count(*) FROM buckets)::int, b.bucket, a.id)) AS part
	FROM chaos_answers a`
)

const truthQuery = `
WITH a AS (
	` + answeredParts + `
), t AS (
	SELECT n, id, points, part, sent AS t FROM a
	UNION
	SELECT a.n, a.id, a.points, a.part, x.t FROM a JOIN chaos_ev h
		ON (h.kind = 'floor' OR h.part = a.part) AND (h.at BETWEEN a.sent AND a.done OR h.vis BETWEEN a.sent AND a.done)
		CROSS JOIN LATERAL (VALUES (h.at), (h.vis)) x(t)
	WHERE x.t BETWEEN a.sent AND a.done
), v AS (
	SELECT t.n, t.id, t.points, fn.floor AS fn, fo.floor AS fo, bn.cycle AS cn, bn.seed AS sn, bo.cycle AS co, bo.seed AS so
	FROM t
	LEFT JOIN LATERAL (SELECT floor FROM chaos_ev f WHERE f.kind = 'floor' AND f.part IS NULL AND f.at <= t.t ORDER BY f.at DESC LIMIT 1) fn ON true
	LEFT JOIN LATERAL (SELECT floor FROM chaos_ev f WHERE f.kind = 'floor' AND f.part IS NULL AND f.vis <= t.t ORDER BY f.vis DESC LIMIT 1) fo ON true
	LEFT JOIN LATERAL (SELECT cycle, seed FROM chaos_ev b WHERE b.kind = 'bucket' AND b.part = t.part AND b.at <= t.t ORDER BY b.at DESC LIMIT 1) bn ON true
	LEFT JOIN LATERAL (SELECT cycle, seed FROM chaos_ev b WHERE b.kind = 'bucket' AND b.part = t.part AND b.vis <= t.t ORDER BY b.vis DESC LIMIT 1) bo ON true
), w AS (
	SELECT n, id, points, fl, pts FROM v
	CROSS JOIN LATERAL (VALUES (fn), (fo)) f(fl)
	CROSS JOIN LATERAL (VALUES (pointsd_bucket_draw(id, cn, sn)), (pointsd_bucket_draw(id, co, so))) p(pts)
), u AS (
	SELECT n, id,
		coalesce(bool_or(points > fl AND points = pts), false) AS ok,
		bool_and(fl IS NULL OR pts IS NULL) AS unknown
	FROM w GROUP BY n, id
)
SELECT count(DISTINCT n) FILTER (WHERE NOT ok AND NOT unknown),
       count(DISTINCT n) FILTER (WHERE unknown),
       count(DISTINCT n),
       coalesce(min(n) FILTER (WHERE NOT ok AND NOT unknown), -1)
FROM u`

// checkTruth runs the truth check on the normal clients' answers.
func checkTruth(ctx context.Context, db *pgxpool.Pool, outs []outcome, seen []seenChange) check {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rows [][]any
	var answers []outcome
	empty, future := 0, 0
	for _, o := range outs {
		if o.answer == nil {
			continue
		}
		if len(o.answer.Users) == 0 {
			empty++
		}
		if o.answer.Timestamp != nil {
			if ts, err := time.Parse(time.DateTime, *o.answer.Timestamp); err == nil && ts.After(o.done.Add(time.Second)) {
				future++
			}
		}
		for _, u := range o.answer.Users {
			rows = append(rows, []any{len(answers), u.ID, u.Points, o.sent, o.done})
		}
		answers = append(answers, o)
	}
	parts, query := answeredParts, truthQuery
	citus, err := hasCitus(ctx, db)
	if err != nil {
		return check{"truth", false, "truth check: " + err.Error()}
	} else if citus {
		parts, query = answeredPartsCitus, strings.Replace(truthQuery, answeredParts, answeredPartsCitus, 1)
	}
	var short shortVerdict
	var untrue, unknown, judged, first, control int
	var changed *time.Time      // the last change before the first untrue answer
	var lagAvg, lagMax *float64 // from commit record to visible, of the changes seen meanwhile
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE chaos_answers (n int, id bigint, points int,
			sent timestamptz, done timestamptz) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"chaos_answers"}, []string{"n", "id", "points", "sent", "done"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		if err := loadSeen(ctx, tx, seen); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE chaos_ev (kind text, part text, cycle bigint, seed bigint,
			floor smallint, at timestamptz, vis timestamptz) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, evSQL, unseenSlack); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE INDEX ON chaos_ev (kind, part, at); CREATE INDEX ON chaos_ev (kind, part, vis); ANALYZE chaos_ev`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, query).Scan(&untrue, &unknown, &judged, &first); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT avg(extract(epoch FROM vis - at)) * 1000, max(extract(epoch FROM vis - at)) * 1000
			FROM chaos_ev WHERE vis - at <> $1::interval AND at >= (SELECT min(sent) FROM chaos_answers)`, unseenSlack).Scan(&lagAvg, &lagMax); err != nil {
			return err
		}
		if first >= 0 {
			if err := tx.QueryRow(ctx, `WITH a AS (`+parts+`) SELECT max(h.vis) FROM a, chaos_ev h
				WHERE a.n = $1 AND (h.kind = 'floor' OR h.part = a.part) AND h.vis <= a.sent`,
				first).Scan(&changed); err != nil {
				return err
			}
		}
		// The control: the same answers, each user one point off, must
		// all be judged untrue, or the check could not fail.
		if _, err := tx.Exec(ctx, `UPDATE chaos_answers SET points = (points + 1) % 101`); err != nil {
			return err
		}
		var x1, x2, x3 int
		if err := tx.QueryRow(ctx, query).Scan(&control, &x1, &x2, &x3); err != nil {
			return err
		}
		if citus {
			return nil // a user's partition is not its row's there (answeredPartsCitus): too slow to draw every bucket
		}
		short, err = checkShort(ctx, tx, answers)
		return err
	})
	if err != nil {
		return check{"truth", false, "truth check: " + err.Error()}
	}
	detail := fmt.Sprintf("%d untrue of %d answers with users (%d more empty), %d not verifiable (a deleted row)",
		untrue, judged, empty, unknown)
	shortOK := citus || short.answers == 0 || short.untrue == 0 && short.control*10 >= short.controlled*9
	switch {
	case citus:
		detail += "; answers with fewer than 2 users not judged on Citus"
	case short.answers == 0:
		detail += "; no answer with fewer than 2 users to judge"
	default:
		detail += fmt.Sprintf("; %d untrue of %d answers with fewer than 2 users (control: %d of %d two-user answers read as empty judged untrue)",
			short.untrue, short.judged, short.control, short.controlled)
	}
	if lagAvg != nil && lagMax != nil {
		detail += fmt.Sprintf("; changes visible %.0f ms (max %.0f) after their commit record", *lagAvg, *lagMax)
	}
	if future > 0 {
		detail += fmt.Sprintf("; %d timestamps after their answer", future)
	}
	if control < judged-unknown {
		detail += fmt.Sprintf("; CONTROL FAILED: only %d of the %d answers made one point off judged untrue", control, judged-unknown)
	}
	if untrue > 0 && first >= 0 && first < len(answers) {
		o := answers[first]
		detail += fmt.Sprintf("; first: %s, sent %s, done %s: %+v", o.replica, clockMS(o.sent), clockMS(o.done), o.answer.Users)
		if changed != nil {
			detail += fmt.Sprintf(", %d ms after the change that made it untrue was visible (%s)", o.sent.Sub(*changed).Milliseconds(), clockMS(*changed))
		}
	}
	return check{"truth", untrue == 0 && shortOK && future == 0 && judged+empty > 0 && control >= judged-unknown, detail}
}

// checkStaleWrites: no bucket write since since committed a cycle older
// than cycle_state's (a leader that lost its lease and wrote anyway).
func checkStaleWrites(ctx context.Context, db *pgxpool.Pool, since time.Time) check {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int
	var first string
	err := db.QueryRow(ctx, `SELECT count(*), coalesce(min(format('%s: %s wrote cycle %s while cycle_state was at %s (pid %s, %s)',
			to_char(at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'), part, cycle, state_cycle, pid, app)), '')
		FROM chaos_truth WHERE kind = 'bucket' AND op = 'UPDATE' AND cycle > 0 AND cycle < state_cycle
		  AND app <> 'chaos' AND at >= $1`, since).Scan(&n, &first)
	switch {
	case err != nil:
		return check{"stale writes", false, err.Error()}
	case n > 0:
		return check{"stale writes", false, fmt.Sprintf("%d buckets written by a stale leader; first %s", n, first)}
	}
	return check{"stale writes", true, "0 buckets written with a cycle below cycle_state's"}
}

func clockMS(t time.Time) string { return t.UTC().Format("15:04:05.000") }
