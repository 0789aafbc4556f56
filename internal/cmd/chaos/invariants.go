package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// check is one invariant's verdict, with the numbers behind it.
type check struct {
	name   string
	ok     bool
	detail string
}

// Bounds of the resource invariant.
const (
	maxMetricsBytes = 200 << 10
	maxRSS          = 256 << 20
	maxRSSGrowth    = 50 << 20
)

// checkUsers: users 1..N all present.
func checkUsers(ctx context.Context, db *pgxpool.Pool, n int64) check {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var count, maxID int64
	err := db.QueryRow(ctx, `SELECT count(*), coalesce(max(id), 0) FROM users`).Scan(&count, &maxID)
	switch {
	case err != nil:
		return check{"users", false, err.Error()}
	case count != n || maxID != n:
		return check{"users", false, fmt.Sprintf("%d users, max id %d; want %d", count, maxID, n)}
	}
	return check{"users", true, fmt.Sprintf("%d, max id %d", count, maxID)}
}

// errNoBucketDraw: the schema predates pointsd_bucket_draw (and maybe
// buckets.seed), so draws cannot be checked.
var errNoBucketDraw = errors.New("pointsd_bucket_draw does not exist (schema before migration 8)")

// drawsOff counts users whose points are not the draw of the cycle recorded
// for their bucket (0 for a bucket never rewritten), as pointsd_bucket_draw
// says. One statement: one snapshot, in which a bucket and its users were
// committed together.
func drawsOff(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var hasDraw bool
	if err := db.QueryRow(ctx,
		`SELECT to_regprocedure('pointsd_bucket_draw(bigint,bigint,bigint)') IS NOT NULL`).Scan(&hasDraw); err != nil {
		return 0, err
	}
	if !hasDraw {
		return 0, errNoBucketDraw
	}
	if citus, err := hasCitus(ctx, db); err != nil || citus {
		if err != nil {
			return 0, err
		}
		return drawsOffCitus(ctx, db)
	}
	var off int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM users u JOIN buckets b ON b.partition = u.tableoid
		WHERE u.points <> pointsd_bucket_draw(u.id, b.cycle, b.seed)`).Scan(&off)
	return off, err
}

func checkDraws(ctx context.Context, db *pgxpool.Pool) check {
	off, err := drawsOff(ctx, db)
	switch {
	case err != nil:
		return check{"draws", false, err.Error()}
	case off > 0:
		return check{"draws", false, fmt.Sprintf("%d users' points are not their bucket's draw", off)}
	}
	return check{"draws", true, "0 users off their bucket's draw"}
}

// checkBuckets: no bucket ahead of cycle_state, none behind a finished
// cycle, and every bucket rewritten since the boundary since (a cycle that
// starts and finishes but rewrites nothing is no cycle).
func checkBuckets(ctx context.Context, db *pgxpool.Pool, since time.Time) check {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var ahead, behind, stale, total int
	err := db.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE b.cycle > s.cycle),
		count(*) FILTER (WHERE b.cycle < s.cycle AND s.finished_at IS NOT NULL),
		count(*) FILTER (WHERE b.updated_at IS NULL OR b.updated_at < $1),
		count(*)
		FROM buckets b, cycle_state s`, since).Scan(&ahead, &behind, &stale, &total)
	switch {
	case err != nil:
		return check{"buckets", false, err.Error()}
	case ahead+behind+stale > 0:
		return check{"buckets", false, fmt.Sprintf("%d buckets ahead of cycle_state, %d behind its finished cycle, %d of %d not rewritten since %s",
			ahead, behind, stale, total, clock(since))}
	}
	return check{"buckets", true, fmt.Sprintf("all %d rewritten since %s, none ahead of cycle_state", total, clock(since))}
}

// cycleWindow is what the cycle invariant looks at.
type cycleWindow struct {
	since     time.Time // cycles started (recorded) from here on must finish
	running   int64     // the cycle unfinished when the fault began, 0 if none
	firstDue  time.Time // every boundary from here to end must start a cycle
	end       time.Time
	period    time.Duration
	finishDue time.Duration // a cycle must have finished this long after its start (when end allows)
	// cutShort are cycles the leader said a held lock cut short: they need
	// not finish (the next cycle rewrites their locked buckets, which the
	// buckets check sees), but are named.
	cutShort map[int64]bool
}

// checkCycles: every started cycle finishes, and no boundary after
// recovery goes without a cycle.
func checkCycles(ctx context.Context, db *pgxpool.Pool, w cycleWindow) (check, []cycleEvent) {
	evs, err := readHistory(ctx, db, w.since.Add(-w.period))
	// A strict cycle's start is recorded when its one transaction commits,
	// seconds after its boundary at 1M users: the last boundary before end
	// is given until its cycle was due to finish.
	last := ceilBoundary(w.end.Add(time.Nanosecond), w.period).Add(-w.period) // the last boundary at or before end
	for err == nil && !startedAt(evs, last) && time.Now().Before(last.Add(w.finishDue)) {
		if !sleepCtx(ctx, 200*time.Millisecond) {
			break
		}
		evs, err = readHistory(ctx, db, w.since.Add(-w.period))
	}
	if err != nil {
		return check{"cycles", false, err.Error()}, nil
	}
	finished := map[int64]bool{}
	for _, ev := range evs {
		if ev.Op != "DELETE" && ev.FinishedAt != nil && !ev.At.Before(w.since) {
			finished[ev.Cycle] = true
		}
	}
	var problems []string
	if w.running > 0 && !finished[w.running] && !w.cutShort[w.running] {
		problems = append(problems, fmt.Sprintf("cycle %d, running at the fault, never finished", w.running))
	}
	started := map[int64]bool{}
	for _, ev := range evs {
		if !ev.Start || ev.At.Before(w.since) || started[ev.Cycle] {
			continue
		}
		started[ev.Cycle] = true
		if ev.StartedAt != nil && ev.StartedAt.Add(w.finishDue).Before(w.end) && !finished[ev.Cycle] && ev.Cycle != w.running && !w.cutShort[ev.Cycle] {
			problems = append(problems, fmt.Sprintf("cycle %d (started %s) not finished by %s", ev.Cycle, clock(*ev.StartedAt), clock(w.end)))
		}
	}
	due := 0
	for b := ceilBoundary(w.firstDue, w.period); !b.After(w.end); b = b.Add(w.period) {
		due++
		if !startedAt(evs, b) {
			problems = append(problems, fmt.Sprintf("no cycle started at the %s boundary", clock(b)))
		}
	}
	if len(problems) > 0 {
		return check{"cycles", false, strings.Join(problems, "; ")}, evs
	}
	detail := fmt.Sprintf("%d started, all finished; %d of %d boundaries from %s kept", len(started), due, due, clock(w.firstDue))
	if w.running > 0 && finished[w.running] {
		detail = fmt.Sprintf("cycle %d (running at the fault) finished; ", w.running) + detail
	}
	if len(w.cutShort) > 0 {
		cut := slices.Sorted(maps.Keys(w.cutShort))
		detail = strings.Replace(detail, "all finished", fmt.Sprintf("all finished but %v, which the leader logged as cut short by a held lock", cut), 1)
	}
	return check{"cycles", true, detail}, evs
}

func startedAt(evs []cycleEvent, b time.Time) bool {
	for _, ev := range evs {
		if ev.Start && ev.StartedAt != nil && math.Abs(float64(ev.StartedAt.Sub(b))) < float64(time.Millisecond) {
			return true
		}
	}
	return false
}

// firstFinish is when the first cycle finished after t, if one did.
func firstFinish(evs []cycleEvent, t time.Time) (time.Time, bool) {
	for _, ev := range evs {
		if ev.FinishedAt != nil && ev.Op != "DELETE" && ev.At.After(t) {
			return ev.At, true
		}
	}
	return time.Time{}, false
}

// ceilBoundary is the first multiple of period (since the Unix epoch) at or
// after t: where pointsd starts its cycles.
func ceilBoundary(t time.Time, period time.Duration) time.Time {
	ns, p := t.UnixNano(), int64(period)
	b := ns - ns%p
	if b < ns {
		b += p
	}
	return time.Unix(0, b)
}

// floorBoundary is the boundary at or before t: the start of the cycle t
// falls in.
func floorBoundary(t time.Time, period time.Duration) time.Time {
	b := ceilBoundary(t, period)
	if b.After(t) {
		b = b.Add(-period)
	}
	return b
}

// checkClients: the normal clients saw only 200s and JSON 503s.
func checkClients(name string, t tally) check {
	detail := fmt.Sprintf("%d× 200, %d× JSON 503, %d× other", t.ok, t.unavailable, t.other)
	if t.other > 0 {
		return check{name, false, detail + ": " + t.topDetails(3)}
	}
	if t.total() == 0 {
		return check{name, false, "no request completed"}
	}
	return check{name, true, detail}
}

// checkResources: each live replica's memory and /metrics stay bounded.
func checkResources(ctx context.Context, rs []*replica) check {
	var parts []string
	ok := true
	for _, r := range rs {
		if !r.alive() {
			continue
		}
		rss, hwm := r.memory()
		size, _, err := r.metrics(ctx)
		bad := err != nil || size > maxMetricsBytes || hwm > maxRSS
		ok = ok && !bad
		s := fmt.Sprintf("%s RSS %s (peak %s), /metrics %s", r.name, mib(rss), mib(hwm), kib(int64(size)))
		if err != nil {
			s += " (" + err.Error() + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return check{"resources", true, "no replica left to measure"}
	}
	return check{"resources", ok, strings.Join(parts, "; ")}
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05.0") }
func mib(n int64) string       { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
func kib(n int64) string       { return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10)) }
