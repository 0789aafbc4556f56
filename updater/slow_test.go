package updater_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/updater"
)

// A paced rolling cycle spans its period by design: the slow-cycle warning
// goes by the work it did, so it stays quiet for a healthy cycle and
// speaks for slow work.
func TestSlowCycleWarningGoesByWork(t *testing.T) {
	t.Parallel()
	for _, slow := range []bool{false, true} {
		t.Run(map[bool]string{false: "healthy", true: "slow"}[slow], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 400}))
			if slow {
				if _, err := pool.Exec(ctx, `
					CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
					BEGIN PERFORM pg_sleep(0.15); RETURN NULL; END $$;
					-- On each partition: rolling cycles update them directly.
					DO $$ DECLARE p regclass; BEGIN
						FOR p IN SELECT partition FROM buckets LOOP
							EXECUTE format('CREATE TRIGGER slow AFTER UPDATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION slow()', p);
						END LOOP;
					END $$;`); err != nil {
					t.Fatal(err)
				}
			}
			var logs pgtest.SyncBuffer
			u, m := newUpdater(t, pool, updater.Config{Mode: pointsd.Rolling, Period: 1200 * time.Millisecond,
				SlowCycle: 400 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			runInBackground(t, u)
			waitEvents(t, u, 10*time.Second, "a finished cycle", 1, kind(updater.EventCycleFinished))
			warned := strings.Contains(logs.String(), `msg="slow cycle"`)
			if warned != slow {
				t.Errorf("slow cycle warning: %v, want %v; log:\n%s", warned, slow, logs.String())
			}
			work, span := histogramSum(t, m, "pointsd_cycle_work_seconds"), histogramSum(t, m, "pointsd_cycle_duration_seconds")
			// The last of 4 slots is at 3/4 of the spread, itself at least
			// 3/4 of the period: a paced cycle spans at least 0.675 s.
			if span < 0.65 || (slow && work < 0.6) || (!slow && work > 0.4) {
				t.Errorf("cycle span %.3fs, work %.3fs; want a paced span (over 0.65s of the 1.2s period) and work %s", span, work,
					map[bool]string{false: "well under 0.4s", true: "over 0.6s (4 buckets of 0.15s)"}[slow])
			}
		})
	}
}
