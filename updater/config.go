package updater

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/testhook"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
)

// Defaults for Config.
const (
	DefaultPeriod     = time.Minute
	DefaultWorkers    = 2
	DefaultSlowCycle  = 10 * time.Second
	DefaultLeaderPoll = 2 * time.Second
)

// Config configures an Updater. Zero values take the defaults above.
type Config struct {
	// Pool is the updater's own pool, apart from the one serving queries so
	// that neither can starve the other: Workers+2 connections (the
	// workers, the leader's own reads and writes, the clock's syncs).
	Pool    *pgxpool.Pool
	Metrics *metrics.Metrics
	Logger  *slog.Logger

	// Instance names this process's sessions (see pgsql.SessionName):
	// an evicting follower ends exactly the sessions of the stale
	// leader's instance. Random by default; the pool's sessions should be
	// named with it too (cmd/pointsd does).
	Instance string

	// Mode, when set, is set as the cluster's mode when Run starts (an
	// explicit serve -mode: whoever sets it last wins), and is the mode of
	// RunCycle. When empty, both follow the cluster's mode, which the
	// leader reads at every boundary.
	Mode       pointsd.Mode
	Period     time.Duration
	Workers    int
	SlowCycle  time.Duration // a cycle slower than this logs a warning
	LeaderPoll time.Duration // how often followers try to lead, and the leader renews its lease
	// LeaseTimeout is how old the leader's lease may get before a follower
	// evicts it; 3 leader polls by default, at least 2.
	LeaseTimeout time.Duration

	// Listener is told of every commit and of this replica's leadership
	// (see Listener). Nil: nobody.
	Listener Listener

	// TestHook, set by tests only, is told of what the updater does as it
	// happens (see Event). Code outside this module cannot make one.
	TestHook *testhook.Hook[Event]

	// Clock is the database's clock (see pgsql.Clock): the leader
	// publishes its schedule and sleeps to it on the database's time, which
	// every replica's cache reads it on, so that no replica's clock skew
	// makes an answer outlive its truth. Nil: this process's clock.
	Clock *pgsql.Clock

	// Rand draws floors and seeds. Tests inject a seeded one to predict
	// every value; by default it is seeded at random.
	Rand *rand.Rand
}

// The bounds of Config's period and workers: the commands check their
// flags with ValidatePeriod and ValidateWorkers, New with Validate.
const (
	MinPeriod  = 100 * time.Millisecond
	MaxWorkers = 64
)

// ValidatePeriod says why period is not a period the updater can keep.
func ValidatePeriod(period time.Duration) error {
	if period < MinPeriod {
		return fmt.Errorf("must be at least %v, got %v", MinPeriod, period)
	}
	return nil
}

// ValidateWorkers says why n is not a number of workers the updater runs.
func ValidateWorkers(n int) error {
	if n < 1 || n > MaxWorkers {
		return fmt.Errorf("must be between 1 and %d, got %d", MaxWorkers, n)
	}
	return nil
}

// Validate says what is wrong with cfg, its defaults filled (see New).
func (cfg Config) Validate() error {
	if err := ValidatePeriod(cfg.Period); err != nil {
		return fmt.Errorf("period %w", err)
	}
	if err := ValidateWorkers(cfg.Workers); err != nil {
		return fmt.Errorf("workers %w", err)
	}
	switch {
	case cfg.SlowCycle < 0 || cfg.LeaderPoll < 0:
		return errors.New("durations must not be negative")
	case cfg.LeaseTimeout < 2*cfg.LeaderPoll:
		return fmt.Errorf("the lease timeout (%v) must be at least two leader polls (%v)", cfg.LeaseTimeout, 2*cfg.LeaderPoll)
	}
	return nil
}
