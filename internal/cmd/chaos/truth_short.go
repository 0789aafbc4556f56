package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// The short-answer check: an answer with fewer than two users says that
// no more users qualified. An empty answer is true only if, at some moment
// while it was served, nobody had points above the floor; an answer with
// one user, only if at most one did. It is judged on the same record as
// the users of the answers (truth.go).
//
// Each bucket's best two draws are computed for every (cycle, seed) it
// held: a bucket then holds 0, 1 or 2 qualifiers under a floor. A reader
// may see each bucket's change committed or not yet visible, and the
// floor's too, so the check takes, at each moment, the fewer qualifiers of
// each bucket's two states, under either floor. It can call an untrue
// answer true, never a true one untrue.
//
// Only the states in force at some moment between the first answer's send
// and the last one's end are drawn ($1, $2): the record holds every
// scenario's since the database was made, and drawing them all at 1M users
// outran the check's 30 s in a full make chaos. A state is in force from its
// commit record to the moment the bucket's next state is seen.
const shortTopSQL = `
CREATE TEMP TABLE chaos_top ON COMMIT DROP AS
WITH e AS (
	SELECT part, cycle, seed, at, lead(vis) OVER (PARTITION BY part ORDER BY at) AS until
	FROM chaos_ev WHERE kind = 'bucket'
), st AS (
	SELECT DISTINCT part, cycle, seed FROM e
	WHERE cycle IS NOT NULL AND at <= $2 AND (until IS NULL OR until >= $1)
), d AS (
	SELECT st.part, st.cycle, st.seed, pointsd_bucket_draw(u.id, st.cycle, st.seed) AS d
	FROM st JOIN (SELECT tableoid::regclass::text AS part, id FROM users) u USING (part)
)
SELECT part, cycle, seed, q[1] AS q1, q[2] AS q2
FROM (SELECT part, cycle, seed, (array_agg(d ORDER BY d DESC))[1:2] AS q FROM d GROUP BY part, cycle, seed) x`

// shortQuery counts, of the answers in chaos_short, those untrue (more
// than k users qualified at every moment they were served, under every
// floor they could have seen) and those judged (a floor was known).
const shortQuery = `
WITH c AS (
	SELECT n, k, sent AS t FROM chaos_short
	UNION
	SELECT s.n, s.k, x.t FROM chaos_short s JOIN chaos_ev h ON h.at BETWEEN s.sent AND s.done OR h.vis BETWEEN s.sent AND s.done
		CROSS JOIN LATERAL (VALUES (h.at), (h.vis)) x(t)
	WHERE x.t BETWEEN s.sent AND s.done
), f AS (
	SELECT c.n, c.k, c.t, v.fl FROM c
	CROSS JOIN LATERAL (VALUES
		((SELECT floor FROM chaos_ev e WHERE e.kind = 'floor' AND e.part IS NULL AND e.at <= c.t ORDER BY e.at DESC LIMIT 1)),
		((SELECT floor FROM chaos_ev e WHERE e.kind = 'floor' AND e.part IS NULL AND e.vis <= c.t ORDER BY e.vis DESC LIMIT 1))) v(fl)
	WHERE v.fl IS NOT NULL
), q AS (
	SELECT f.n, f.k, f.t, f.fl, sum(least(qn.q, qo.q)) AS qualified
	FROM f CROSS JOIN (SELECT DISTINCT part FROM chaos_ev WHERE kind = 'bucket') p
	CROSS JOIN LATERAL (SELECT coalesce((SELECT (tp.q1 > f.fl)::int + coalesce((tp.q2 > f.fl)::int, 0)
		FROM chaos_top tp WHERE tp.part = b.part AND tp.cycle = b.cycle AND tp.seed = b.seed), 0) AS q
		FROM (SELECT p.part, (SELECT e.cycle FROM chaos_ev e WHERE e.kind = 'bucket' AND e.part = p.part AND e.at <= f.t ORDER BY e.at DESC LIMIT 1) AS cycle,
		                     (SELECT e.seed FROM chaos_ev e WHERE e.kind = 'bucket' AND e.part = p.part AND e.at <= f.t ORDER BY e.at DESC LIMIT 1) AS seed) b) qn
	CROSS JOIN LATERAL (SELECT coalesce((SELECT (tp.q1 > f.fl)::int + coalesce((tp.q2 > f.fl)::int, 0)
		FROM chaos_top tp WHERE tp.part = b.part AND tp.cycle = b.cycle AND tp.seed = b.seed), 0) AS q
		FROM (SELECT p.part, (SELECT e.cycle FROM chaos_ev e WHERE e.kind = 'bucket' AND e.part = p.part AND e.vis <= f.t ORDER BY e.vis DESC LIMIT 1) AS cycle,
		                     (SELECT e.seed FROM chaos_ev e WHERE e.kind = 'bucket' AND e.part = p.part AND e.vis <= f.t ORDER BY e.vis DESC LIMIT 1) AS seed) b) qo
	GROUP BY f.n, f.k, f.t, f.fl
)
SELECT count(*) FILTER (WHERE least_qualified > k), count(*)
FROM (SELECT n, k, min(qualified) AS least_qualified FROM q GROUP BY n, k) a`

// shortVerdict is the short-answer check's result.
type shortVerdict struct {
	answers        int // with fewer than two users
	untrue, judged int
	// control and controlled: of the answers with two users, judged as if
	// they had been empty, how many were found untrue, of how many.
	control, controlled int
}

// checkShort judges the answers with fewer than two users, and as a
// control the answers with two as if they had been empty: nearly all of
// those must be found untrue, or the check could not fail. It runs in the
// truth check's transaction, on its chaos_ev, and only when some answer had
// fewer than two users (v.answers is 0 otherwise).
func checkShort(ctx context.Context, tx pgx.Tx, answers []outcome) (shortVerdict, error) {
	var v shortVerdict
	var short, full [][]any
	for i, o := range answers {
		row := []any{i, len(o.answer.Users), o.sent, o.done}
		if len(o.answer.Users) < 2 {
			short = append(short, row)
		} else {
			full = append(full, []any{i, 0, o.sent, o.done})
		}
	}
	if v.answers = len(short); v.answers == 0 {
		return v, nil // nothing to judge: skip the drawing, the slow part
	}
	from, to := answers[0].sent, answers[0].done
	for _, o := range answers {
		from, to = minTime(from, o.sent), maxTime(to, o.done)
	}
	if _, err := tx.Exec(ctx, shortTopSQL, from, to); err != nil {
		return v, err
	}
	if _, err := tx.Exec(ctx, `CREATE INDEX ON chaos_top (part, cycle, seed); ANALYZE chaos_top`); err != nil {
		return v, err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE chaos_short (n int, k int, sent timestamptz, done timestamptz) ON COMMIT DROP`); err != nil {
		return v, err
	}
	judge := func(rows [][]any) (untrue, judged int, err error) {
		if _, err := tx.Exec(ctx, `TRUNCATE chaos_short`); err != nil {
			return 0, 0, err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"chaos_short"}, []string{"n", "k", "sent", "done"}, pgx.CopyFromRows(rows)); err != nil {
			return 0, 0, err
		}
		err = tx.QueryRow(ctx, shortQuery).Scan(&untrue, &judged)
		return untrue, judged, err
	}
	var err error
	if v.untrue, v.judged, err = judge(short); err != nil {
		return v, err
	}
	v.control, v.controlled, err = judge(full)
	return v, err
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
