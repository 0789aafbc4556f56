package pointsd

import "time"

// Schedule is what every replica relies on of the current cycle: its
// number, its floor and the schedule its leader published. State, Cycle
// and Answer share it. pgsql turns the stored milliseconds into Durations
// once, as it reads them.
type Schedule struct {
	Cycle int64 `db:"cycle"`
	Floor int   `db:"floor"`
	// Period is the current cycle's published period, 0 for a cycle run
	// by hand (unpaced): its buckets have no slots.
	Period time.Duration `db:"period"`
	// Spread is the part of the period its rolling slots are spread over
	// (see partition.Slots); the whole period if none was published.
	Spread    time.Duration `db:"spread"`
	StartedAt time.Time     `db:"started_at"`
	// NextStart is the earliest the next cycle may start, as the leader
	// published it; nil while no leader keeps a schedule.
	NextStart *time.Time `db:"next_start"`
}

// State is the cycle every replica sees: the floor queries use, and how far
// the leader has got.
type State struct {
	Schedule
	Seed         int64      `db:"seed"`
	Mode         Mode       `db:"mode"`
	FinishedAt   *time.Time `db:"finished_at"`
	LastDuration *float64   `db:"last_duration"` // seconds, of the last finished cycle
	// LastBucketMax is the slowest bucket transaction of the last finished
	// rolling cycle, in seconds; nil before there was one.
	LastBucketMax *float64 `db:"last_bucket_max"`
	BucketsDone   int      `db:"buckets_done"`
	BucketsTotal  int      `db:"buckets_total"`
	// MaxBucketCycle is the latest cycle any bucket was rewritten in: never
	// above Cycle unless the state was edited by hand.
	MaxBucketCycle int64 `db:"max_bucket_cycle"`
	// ClusterMode is the mode the next cycle will run in (see
	// pgsql.SetClusterMode).
	ClusterMode Mode `db:"cluster_mode"`
}

// Cycle is what a leader publishes when a cycle starts: its Schedule (the
// Period is the leader's when the cycle is paced, 0 for a cycle run by
// hand), and the seed and mode of its draws.
type Cycle struct {
	Schedule
	Seed int64
	Mode Mode
	// Term is the leadership term the cycle is written under (see
	// pgsql.TakeTerm): every write checks it is still the current one. 0
	// for a cycle run by hand (pointsd cycle), which no term fences.
	Term int64
}
