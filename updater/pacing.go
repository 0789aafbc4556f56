package updater

import (
	"log/slog"
	"math"
	"time"

	"github.com/pointsd/pointsd"
)

// Pacing: a rolling cycle's slots are spread over the period less a
// reserve, kept for the last buckets' own work, so that a healthy cycle
// ends before the next boundary whatever the number of users. Spread over
// the whole period, the last of 60 buckets starts at 59/60 of it and ends
// a bucket's time later: past the boundary once a bucket takes longer than
// a sixtieth of the period (10M users on this machine: half a second
// against a 30 s period's 0.5 s).
const (
	// reserveBuckets is the reserve in slowest buckets of the cycle before:
	// the last bucket, and one it may queue behind when every worker is
	// busy.
	reserveBuckets = 2
	// The reserve is at least minReserve of the period, at most
	// maxReserve: a cycle whose buckets need more than that has too few
	// partitions or workers, and is told so (see capacity).
	minReserve = 0.02
	maxReserve = 0.25
	// reserveStep: the reserve moves in steps of this part of the period,
	// so that the slots stay where they were while the bucket times only
	// jitter (a bucket is then rewritten one period after its last
	// rewrite).
	reserveStep = 0.01
	// unknownReserve is the reserve, as a part of the period, before any
	// rolling cycle was timed.
	unknownReserve = 0.1
)

// part is the share f of the period p.
func part(p time.Duration, f float64) time.Duration {
	return time.Duration(math.Round(float64(p) * f))
}

// spreadFor is how much of the period p the slots of a new rolling cycle
// take, given the slowest bucket of the last rolling cycle (0: unknown).
func spreadFor(p, lastBucketMax time.Duration) time.Duration {
	reserve := reserveBuckets * lastBucketMax
	if lastBucketMax <= 0 {
		reserve = part(p, unknownReserve)
	}
	reserve = min(max(reserve, part(p, minReserve)), part(p, maxReserve))
	if step := part(p, reserveStep); step > 0 {
		reserve = (reserve + step - 1) / step * step
	}
	return p - reserve
}

// lastBucketMax is the slowest bucket of the last finished rolling cycle,
// as recorded in st; 0 if none was.
func lastBucketMax(st pointsd.State) time.Duration {
	if st.LastBucketMax == nil {
		return 0
	}
	return time.Duration(*st.LastBucketMax * float64(time.Second))
}

// busyWarn: a rolling cycle whose buckets kept the workers busy for more
// than busyWarn of its spread is close to the most this configuration can
// do; the slowest bucket beyond the largest reserve needs smaller buckets.
const busyWarn = 0.75

// capacity warns when a paced rolling cycle came close to what its period,
// workers and partitions allow, naming the remedy.
func (u *Updater) capacity(res Result, spread time.Duration, attrs []any) {
	if res.Mode != pointsd.Rolling || res.Buckets == 0 || spread <= 0 {
		return
	}
	busy := res.Work.Seconds() / (float64(u.cfg.Workers) * spread.Seconds())
	switch {
	case res.BucketMax*reserveBuckets > part(u.cfg.Period, maxReserve):
		u.log.Warn("rolling buckets are too large for the period: a cycle may overrun; more partitions (set when the users table is created: pointsd migrate -partitions N on a new database; see pointsd size) or a longer period",
			append(attrs, slog.Duration("bucket_max", res.BucketMax), slog.Duration("period", u.cfg.Period))...)
	case busy > busyWarn:
		u.log.Warn("rolling cycle near capacity: its buckets kept the workers busy most of the period; add workers (-workers) if the database has idle cores, else a faster database or a longer period (see pointsd size)",
			append(attrs, slog.Float64("busy", busy), slog.Int("workers", u.cfg.Workers), slog.Duration("spread", spread))...)
	}
}
