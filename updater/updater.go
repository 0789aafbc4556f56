package updater

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/pgsql"
)

// drainTimeout is how long an in-flight bucket transaction may go on after
// shutdown or loss of leadership before it is cancelled (and rolled back):
// the process exits within 5 s of SIGTERM.
const drainTimeout = 4 * time.Second

// Updater runs cycles: when asked (RunCycle) or, as the leader among the
// replicas sharing a database, on every period's boundary (Run).
type Updater struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	state Status
	// modeSet is whether Config.Mode has been set as the cluster's mode
	// (once, when Run first reaches the database). Run's goroutine only.
	modeSet bool
}

// Status is what the updater knows of itself.
type Status struct {
	// Mode is the cluster's mode as this replica last read it (within a
	// leader poll), "" before it could.
	Mode   pointsd.Mode
	Leader bool
	// Problem says why this replica cannot lead, or why it last stepped
	// down; "" when there is none.
	Problem string
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Updater, error) {
	if cfg.Pool == nil || cfg.Metrics == nil {
		return nil, errors.New("updater: Config.Pool and Config.Metrics are required")
	}
	if cfg.Mode != "" {
		if err := cfg.Mode.Validate(); err != nil {
			return nil, fmt.Errorf("updater: mode %q: %w", cfg.Mode, err)
		}
	}
	cfg.Period = cmp.Or(cfg.Period, DefaultPeriod)
	cfg.Workers = cmp.Or(cfg.Workers, DefaultWorkers)
	cfg.SlowCycle = cmp.Or(cfg.SlowCycle, DefaultSlowCycle)
	cfg.LeaderPoll = cmp.Or(cfg.LeaderPoll, DefaultLeaderPoll)
	cfg.LeaseTimeout = cmp.Or(cfg.LeaseTimeout, 3*cfg.LeaderPoll)
	cfg.Instance = cmp.Or(cfg.Instance, NewInstance())
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("updater: %w", err)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())) //nolint:gosec // G404: points and floors are a game's draws, not secrets
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Listener == nil {
		cfg.Listener = nobody{}
	}
	cfg.Metrics.CyclePeriod.Set(cfg.Period.Seconds())
	u := &Updater{cfg: cfg, log: cfg.Logger}
	u.observeMode(cfg.Mode)
	return u, nil
}

// LeaderStatus reports whether this replica leads, and why it cannot lead
// when it cannot ("" otherwise): what the listener was last told.
func (u *Updater) LeaderStatus() (leader bool, problem string) {
	st := u.Status()
	return st.Leader, st.Problem
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
	u.cfg.Listener.LeaderChanged(leader, u.state.Problem) // under the lock: told in order
	u.mu.Unlock()
	u.cfg.Metrics.Leader.Set(map[bool]float64{true: 1}[leader])
	if !leader {
		u.cfg.Metrics.CycleSpread.Set(0) // a follower paces nothing
	}
	u.emit(Event{Kind: map[bool]EventKind{true: EventLeading, false: EventFollowing}[leader]})
}

// observeMode records the cluster's mode as read from the database.
func (u *Updater) observeMode(mode pointsd.Mode) {
	if mode == "" {
		return // unknown: the state row is missing
	}
	u.mu.Lock()
	u.state.Mode = mode
	u.mu.Unlock()
	for _, m := range pointsd.Modes {
		u.cfg.Metrics.ClusterMode.WithLabelValues(m.String()).Set(map[bool]float64{true: 1}[mode == m])
	}
}

// setProblem records why this replica cannot lead ("" when it can), and
// logs it when it changes.
func (u *Updater) setProblem(why string) {
	u.mu.Lock()
	old := u.state.Problem
	u.state.Problem = why
	if why != old {
		u.cfg.Listener.LeaderChanged(u.state.Leader, why)
	}
	u.mu.Unlock()
	u.cfg.Metrics.LeaderEligible.Set(map[bool]float64{true: 1}[why == ""])
	switch why {
	case old:
	case "":
		u.log.Info("this replica can lead again", slog.String("was", old))
	default:
		u.log.Error("this replica cannot lead", slog.String("why", why))
		u.emit(Event{Kind: EventCannotLead})
	}
}

// Run campaigns for leadership until ctx ends, and runs a cycle on every
// period boundary while it leads. A leader that lost its connection
// campaigns again at once (it is likely the only one that can lead, and a
// cycle may be waiting to be resumed); one that stepped down after failing
// cycles lets the others lead for a while first.
func (u *Updater) Run(ctx context.Context) {
	// A schedule kept on this process's clock before the database's is
	// known would be off by the skew: lead only once it is.
	for u.cfg.Clock != nil {
		if _, _, ok := u.cfg.Clock.Offset(); ok {
			break
		}
		if !sleep(ctx, u.cfg.LeaderPoll/4) {
			return
		}
	}
	for ctx.Err() == nil {
		term, lead, release, err := u.campaign(ctx)
		if err != nil {
			return // ctx ended
		}
		u.setLeader(true)
		u.log.Info("leading: this replica runs the updater", slog.String("cluster_mode", u.Status().Mode.String()), slog.Int64("term", term))
		stepDown := u.lead(lead, term)
		release()
		u.setLeader(false)
		if ctx.Err() != nil {
			return
		}
		if stepDown != nil {
			pause := max(u.cfg.Period, 5*u.cfg.LeaderPoll)
			u.setProblem(fmt.Sprintf("stepped down after %d failed cycles in a row: %v", maxFailedCycles, stepDown))
			u.log.Error("stepped down so that another replica can lead", slog.Duration("pause", pause), slog.Any("err", stepDown))
			if !sleep(ctx, pause) {
				return
			}
			continue
		}
		u.log.Warn("lost leadership; campaigning again")
	}
}

// maxFailedCycles is how many cycles in a row a leader may fail for a reason
// of its own (not the database being unreachable) before it steps down: a
// replica that cannot do the work must not keep the lock from one that can.
const maxFailedCycles = 3

// newCycle draws the floor and seed of cycle number n. A paced cycle
// publishes the period it is paced on, and the spread of its slots.
func (u *Updater) newCycle(n int64, start time.Time, spread time.Duration, mode pointsd.Mode) pointsd.Cycle {
	c := pointsd.Cycle{
		Schedule: pointsd.Schedule{Cycle: n, Floor: pgsql.DrawFloor(u.cfg.Rand), StartedAt: start},
		Seed:     int64(u.cfg.Rand.Uint64()), //nolint:gosec // G115: 64 random bits, reinterpreted
		Mode:     mode,
	}
	if spread > 0 {
		c.Period, c.Spread = u.cfg.Period, spread
	}
	return c
}

// cycleOf is the cycle st describes, to resume it.
func cycleOf(st pointsd.State) pointsd.Cycle {
	return pointsd.Cycle{Schedule: st.Schedule, Seed: st.Seed, Mode: st.Mode}
}

// now is the time the schedule is kept on: the database's, when known.
func (u *Updater) now() time.Time {
	if u.cfg.Clock == nil {
		return time.Now()
	}
	return u.cfg.Clock.Now()
}

// NewInstance returns a random name for a process's sessions.
func NewInstance() string {
	return strconv.FormatUint(rand.Uint64()>>16, 36) //nolint:gosec // G404: a name, not a secret
}

// SessionLimits bounds the updater's sessions for a period (see
// pgsql.Limits): a statement may run up to strictTimeout (a strict cycle
// is one statement), a lock is waited for a second (a bucket whose
// partition is locked is tried again later in the cycle), and a
// transaction left idle by a client that went away ends after 5 s,
// releasing its locks.
func SessionLimits(period time.Duration) pgsql.Limits {
	return pgsql.Limits{Statement: strictTimeout(period), Lock: lockTimeout, IdleInTransaction: 5 * time.Second}
}

// lockTimeout is how long an updater's statement waits for a lock.
const lockTimeout = time.Second

// strictTimeout bounds a strict cycle's transaction: twice the period, at
// least 30 s (10M users take about 30 s).
func strictTimeout(period time.Duration) time.Duration { return max(2*period, 30*time.Second) }

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
