package updater

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/partition"
	pgsql "github.com/pointsd/pointsd/sql"
)

// Defaults for Config.
const (
	DefaultPeriod     = time.Minute
	DefaultWorkers    = 2
	DefaultSlowCycle  = 10 * time.Second
	DefaultLeaderPoll = 2 * time.Second
)

// drainTimeout is how long an in-flight bucket transaction may go on after
// shutdown or loss of leadership before it is cancelled (and rolled back):
// the process exits within 5 s of SIGTERM.
const drainTimeout = 4 * time.Second

// Config configures an Updater. Zero values take the defaults above.
type Config struct {
	// Pool is the updater's own pool, apart from the one serving queries so
	// that neither can starve the other. Workers+1 connections suffice.
	Pool    *pgxpool.Pool
	Metrics *metrics.Metrics
	Logger  *slog.Logger

	Mode       Mode
	Period     time.Duration
	Workers    int
	SlowCycle  time.Duration // a cycle slower than this logs a warning
	LeaderPoll time.Duration // how often followers try to lead, and the leader checks it still does

	// Rand draws floors and seeds. Tests inject a seeded one to predict
	// every value; by default it is seeded at random.
	Rand *rand.Rand
	// OnCommit, if set, is called after every committed change of points or
	// floor with the bucket rewritten, or AllBuckets when a cycle started
	// (the floor changed, and in strict mode every bucket).
	OnCommit func(bucket int)
}

// Updater runs cycles: when asked (RunCycle) or, as the leader among the
// replicas sharing a database, on every period's boundary (Run).
type Updater struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	state Status
}

// Status is what the updater knows of itself.
type Status struct {
	Mode      Mode
	Leader    bool
	LastCycle time.Duration // the last finished cycle's duration, 0 before one
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Updater, error) {
	if cfg.Pool == nil || cfg.Metrics == nil {
		return nil, errors.New("updater: Config.Pool and Config.Metrics are required")
	}
	cfg.Mode = cmp.Or(cfg.Mode, Rolling)
	if err := cfg.Mode.UnmarshalText([]byte(cfg.Mode)); err != nil {
		return nil, fmt.Errorf("updater: mode %q: %w", cfg.Mode, err)
	}
	cfg.Period = cmp.Or(cfg.Period, DefaultPeriod)
	cfg.Workers = cmp.Or(cfg.Workers, DefaultWorkers)
	cfg.SlowCycle = cmp.Or(cfg.SlowCycle, DefaultSlowCycle)
	cfg.LeaderPoll = cmp.Or(cfg.LeaderPoll, DefaultLeaderPoll)
	switch {
	case cfg.Period < 100*time.Millisecond:
		return nil, fmt.Errorf("updater: period must be at least 100ms, got %v", cfg.Period)
	case cfg.Workers < 1 || cfg.Workers > 64:
		return nil, fmt.Errorf("updater: workers must be between 1 and 64, got %d", cfg.Workers)
	case cfg.SlowCycle < 0 || cfg.LeaderPoll < 0:
		return nil, errors.New("updater: durations must not be negative")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Updater{cfg: cfg, log: cfg.Logger, state: Status{Mode: cfg.Mode}}, nil
}

// Status returns a snapshot of the updater's status.
func (u *Updater) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state
}

func (u *Updater) setLeader(leader bool) {
	u.mu.Lock()
	u.state.Leader = leader
	u.mu.Unlock()
	u.cfg.Metrics.Leader.Set(map[bool]float64{true: 1}[leader])
}

// Run campaigns for leadership until ctx ends, and runs a cycle on every
// period boundary while it leads. It returns nil when ctx is cancelled.
func (u *Updater) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		lead, release, err := u.campaign(ctx)
		if err != nil {
			break // ctx ended
		}
		u.setLeader(true)
		u.log.Info("leading: this replica runs the updater", slog.String("mode", string(u.cfg.Mode)))
		u.lead(lead)
		release()
		u.setLeader(false)
		if ctx.Err() == nil {
			u.log.Warn("lost leadership; campaigning again")
			// Back off two polls, so that a healthy follower (which tries
			// every poll) takes over rather than a replica whose connection
			// just failed.
			sleep(ctx, 2*u.cfg.LeaderPoll)
		}
	}
	return nil
}

// lead runs cycles on the schedule until ctx ends. A cycle this leader
// finds started but unfinished in the current period (its predecessor died
// mid-cycle) is resumed at once; otherwise the first cycle waits for the
// next boundary.
func (u *Updater) lead(ctx context.Context) {
	for ctx.Err() == nil {
		st, err := pgsql.ReadState(ctx, u.cfg.Pool)
		if err != nil {
			u.log.Error("read cycle state", slog.Any("err", err))
			if !sleep(ctx, u.cfg.LeaderPoll) {
				return
			}
			continue
		}
		u.cfg.Metrics.Floor.Set(float64(st.Floor))
		sched := partition.Schedule{Period: u.cfg.Period, Buckets: max(st.BucketsTotal, 1)}
		now := time.Now()
		if st.StartedAt.Equal(sched.CycleStart(now)) && st.FinishedAt == nil && Mode(st.Mode) == Rolling {
			u.log.Info("resuming cycle", slog.Int64("cycle", st.Cycle), slog.Int("buckets_left", st.BucketsTotal-st.BucketsDone))
			if _, err := u.run(ctx, cycleOf(st), true, true); err != nil && ctx.Err() == nil {
				u.log.Error("cycle failed", slog.Int64("cycle", st.Cycle), slog.Any("err", err))
			}
			continue
		}
		next := sched.NextCycle(now)
		// Replicas trust the published schedule to know how long their
		// answers stay true: never start before it says the next cycle may,
		// even if this leader's period is shorter than its predecessor's.
		if st.PeriodMS != nil {
			for published := st.StartedAt.Add(time.Duration(*st.PeriodMS) * time.Millisecond); next.Before(published); {
				next = next.Add(u.cfg.Period)
			}
		}
		if !sleep(ctx, time.Until(next)) {
			return
		}
		c := u.newCycle(st.Cycle+1, next, true)
		if _, err := u.run(ctx, c, false, true); err != nil && ctx.Err() == nil {
			u.log.Error("cycle failed", slog.Int64("cycle", c.Number), slog.Any("err", err))
		}
	}
}

// newCycle draws the floor and seed of cycle number n. A paced cycle
// publishes the period it is paced on.
func (u *Updater) newCycle(n int64, start time.Time, paced bool) pgsql.Cycle {
	c := pgsql.Cycle{
		Number:    n,
		Floor:     u.cfg.Rand.IntN(101), // 0..100 inclusive
		Seed:      int64(u.cfg.Rand.Uint64()),
		Mode:      string(u.cfg.Mode),
		StartedAt: start,
	}
	if paced {
		c.Period = u.cfg.Period
	}
	return c
}

func cycleOf(st pgsql.State) pgsql.Cycle {
	c := pgsql.Cycle{Number: st.Cycle, Floor: st.Floor, Seed: st.Seed, Mode: st.Mode, StartedAt: st.StartedAt}
	if st.PeriodMS != nil {
		c.Period = time.Duration(*st.PeriodMS) * time.Millisecond
	}
	return c
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// detach returns a context that outlives ctx by grace: a transaction begun
// under it may commit after shutdown starts, but not hang the exit.
func detach(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(dctx, func() { t.Stop() })
	})
	return dctx, func() { stop(); cancel() }
}
