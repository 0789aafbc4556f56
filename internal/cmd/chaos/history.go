package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// cycle_state is one row, overwritten at every cycle start and finish, so
// sampling it could miss a cycle that starts and finishes between two
// samples. A trigger records every change instead, in the transaction that
// makes it: a start that rolls back leaves no trace, one that commits
// leaves exactly one. It is the harness's, not pointsd's, and is
// reinstalled if a repair recreates the table.
const historySQL = `
CREATE TABLE IF NOT EXISTS chaos_cycles (
	at          timestamptz NOT NULL DEFAULT clock_timestamp(),
	op          text        NOT NULL,
	cycle       bigint,
	started_at  timestamptz,
	finished_at timestamptz
);
CREATE OR REPLACE FUNCTION chaos_log_cycle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		INSERT INTO chaos_cycles (op, cycle, started_at, finished_at)
		VALUES (TG_OP, OLD.cycle, OLD.started_at, OLD.finished_at);
		RETURN OLD;
	END IF;
	INSERT INTO chaos_cycles (op, cycle, started_at, finished_at)
	VALUES (TG_OP, NEW.cycle, NEW.started_at, NEW.finished_at);
	RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS chaos_log_cycle ON cycle_state;
CREATE TRIGGER chaos_log_cycle AFTER INSERT OR UPDATE OR DELETE ON cycle_state
	FOR EACH ROW EXECUTE FUNCTION chaos_log_cycle();`

func installHistory(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, historySQL); err != nil {
		return fmt.Errorf("install cycle history: %w", err)
	}
	return nil
}

// historyInstalled reports whether the trigger is still on cycle_state.
func historyInstalled(ctx context.Context, db *pgxpool.Pool) bool {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_trigger
		WHERE tgname = 'chaos_log_cycle' AND tgrelid = to_regclass('cycle_state'))`).Scan(&ok)
	return err == nil && ok
}

// cycleEvent is one recorded change of cycle_state.
type cycleEvent struct {
	At         time.Time
	Op         string
	Cycle      int64
	StartedAt  *time.Time
	FinishedAt *time.Time
	// Start: the change started a cycle (see readHistory).
	Start bool
}

func readHistory(ctx context.Context, db *pgxpool.Pool, since time.Time) ([]cycleEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A start moves the cycle number on and clears finished_at. Other
	// changes leave finished_at empty too while a cycle runs, or after it
	// failed (the next start published): they are not starts. The number
	// is compared with the change before, which may be older than since.
	rows, err := db.Query(ctx, `SELECT at, op, cycle, started_at, finished_at, start FROM (
		SELECT *, op <> 'DELETE' AND finished_at IS NULL
		          AND cycle IS DISTINCT FROM lag(cycle) OVER (ORDER BY at) AS start
		FROM chaos_cycles) h
		WHERE at >= $1 ORDER BY at`, since)
	if err != nil {
		return nil, fmt.Errorf("read cycle history: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[cycleEvent])
}

// cycleState is cycle_state as the harness reads it.
type cycleState struct {
	Cycle        int64
	StartedAt    time.Time
	FinishedAt   *time.Time
	Mode         string
	BucketsDone  int
	BucketsTotal int
}

func readState(ctx context.Context, db *pgxpool.Pool) (cycleState, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var st cycleState
	err := db.QueryRow(ctx, `
		SELECT s.cycle, s.started_at, s.finished_at, s.mode,
		       (SELECT count(*) FROM buckets b WHERE b.cycle >= s.cycle)::int,
		       (SELECT count(*) FROM buckets)::int
		FROM cycle_state s`).Scan(&st.Cycle, &st.StartedAt, &st.FinishedAt, &st.Mode, &st.BucketsDone, &st.BucketsTotal)
	if err != nil {
		return st, fmt.Errorf("read cycle_state: %w", err)
	}
	return st, nil
}
