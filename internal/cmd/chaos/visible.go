package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// watcher sees when each change becomes visible. The truth record's times
// are taken at commit, before the commit's WAL flush, and the flush of a
// strict cycle takes 25–40 ms here (a 200k-user COMMIT timed in psql):
// until it is done readers still see the old state, and an answer read
// then is true. The watcher reads cycle_state and every bucket's cycle
// every few milliseconds and records when each new value first shows, so
// that the old state is held valid until then and no longer.
type watcher struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	seen  []seenChange
	last  []int64 // each bucket's cycle last seen, by bucket
	floor [2]int64
}

// seenChange is one value first seen: a floor (bucket -1) or a bucket's
// cycle.
type seenChange struct {
	bucket int
	cycle  int64
	floor  int64
	at     time.Time
}

// watchEvery is the watcher's pace: a bound on how late it sees a change.
const watchEvery = 5 * time.Millisecond

func startWatcher(ctx context.Context, db *pgxpool.Pool) *watcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{cancel: cancel, done: make(chan struct{}), floor: [2]int64{-1, -1}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			w.poll(ctx, db)
			sleepCtx(ctx, watchEvery)
		}
	}()
	return w
}

func (w *watcher) poll(ctx context.Context, db *pgxpool.Pool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var cycle, floor int64
	var buckets []int64
	err := db.QueryRow(ctx, `SELECT s.cycle, s.floor, array_agg(b.cycle ORDER BY b.bucket)
		FROM cycle_state s CROSS JOIN buckets b GROUP BY s.cycle, s.floor`).Scan(&cycle, &floor, &buckets)
	if err != nil {
		return // the database is down or damaged: nothing to see
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.floor != [2]int64{cycle, floor} {
		w.floor = [2]int64{cycle, floor}
		w.seen = append(w.seen, seenChange{bucket: -1, cycle: cycle, floor: floor, at: now})
	}
	for i, c := range buckets {
		if i >= len(w.last) || w.last[i] != c {
			w.seen = append(w.seen, seenChange{bucket: i, cycle: c, at: now})
		}
	}
	w.last = slices.Clone(buckets)
}

// stop ends the watching and returns what was seen.
func (w *watcher) stop() []seenChange {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

// loadSeen puts what was seen in a temporary table for the truth query.
func loadSeen(ctx context.Context, tx pgx.Tx, seen []seenChange) error {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE chaos_seen (kind text, part text, cycle bigint, floor bigint,
		seen timestamptz) ON COMMIT DROP`); err != nil {
		return err
	}
	rows := make([][]any, 0, len(seen))
	for _, s := range seen {
		kind := "bucket"
		if s.bucket < 0 {
			kind = "floor"
		}
		rows = append(rows, []any{kind, s.bucket, s.cycle, s.floor, s.at})
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE chaos_seen_raw (kind text, bucket int, cycle bigint, floor bigint,
		seen timestamptz) ON COMMIT DROP`); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"chaos_seen_raw"}, []string{"kind", "bucket", "cycle", "floor", "seen"}, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO chaos_seen
		SELECT r.kind, b.partition::text, r.cycle, CASE WHEN r.kind = 'floor' THEN r.floor END, r.seen
		FROM chaos_seen_raw r LEFT JOIN buckets b ON b.bucket = r.bucket AND r.kind = 'bucket';
		CREATE INDEX ON chaos_seen (kind, part, cycle, seen)`)
	return err
}
