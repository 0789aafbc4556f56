package partition

import (
	"math"
	"time"
)

// Costs are what one user costs a cycle, measured (see
// docs/BENCHMARKS-SCALE.md): the database's time to rewrite it in a rolling
// bucket, the WAL that writes, and the table space it takes.
type Costs struct {
	Work  time.Duration // per user and cycle, in one bucket transaction
	WAL   float64       // bytes per user and cycle
	Bytes float64       // table bytes per user (heap and primary key)
}

// MeasuredCosts are this project's benchmark machine's (make bench-scale
// on a 2-core Xeon, PostgreSQL 15 with make run's settings, 10M users:
// rolling work 16.8 s, 1.36 GiB of WAL with a checkpoint, a 1.54 GiB
// table): a starting point for sizing; measure yours with pointsd cycle.
var MeasuredCosts = Costs{Work: 1680 * time.Nanosecond, WAL: 146, Bytes: UserBytes}

// UserBytes is the table space one user takes, heap and primary key, at
// fillfactor 45: 1574.3 MiB for 10M users (make bench-scale, see
// docs/BENCHMARKS-SCALE.md). It stays the same cycle after cycle, since
// every update is HOT.
const UserBytes = 165

// Sizing rules.
const (
	// bucketShare: a bucket's transaction should take at most
	// period/bucketShare, so that the reserve kept for the last buckets
	// (twice the slowest) is at most the smallest one the updater keeps.
	bucketShare = 100
	// busyShare is the most of the period the workers should be busy.
	busyShare = 0.75
	// spreadShare is the part of the period slots are typically spread
	// over (the updater keeps the rest).
	spreadShare = 0.9
	// checkpointTimeout is PostgreSQL's default: max_wal_size should hold
	// the WAL written between two timed checkpoints.
	checkpointTimeout = 5 * time.Minute
)

// Sizing is a recommendation for a number of users and a period.
type Sizing struct {
	Users  int64
	Period time.Duration
	// Work is a whole cycle's database time; a rolling cycle spreads it
	// over Workers connections.
	Work time.Duration
	// Partitions makes each bucket's transaction at most period/100.
	Partitions int
	// Workers keeps them busy at most 3/4 of the period.
	Workers int
	// Bucket is one bucket's transaction at that many partitions.
	Bucket time.Duration
	// TableBytes and WALPerCycle are the table's size and one cycle's WAL.
	TableBytes, WALPerCycle float64
	// SharedBuffers and MaxWALSize are the PostgreSQL settings to start
	// from, in bytes.
	SharedBuffers, MaxWALSize float64
	// FitsOneNode is false when the workers needed exceed the database's
	// cores: one primary cannot keep the period (see docs/SCALING.md).
	FitsOneNode bool
}

// Size recommends partitions, workers and settings for users re-drawn
// every period on a database with cores cores and memory bytes of memory,
// at costs c. minPartitions and maxPartitions bound the partitions.
func Size(users int64, period time.Duration, cores int, memory float64, c Costs, minPartitions, maxPartitions int) Sizing {
	s := Sizing{Users: users, Period: period}
	s.Work = time.Duration(float64(users) * float64(c.Work))
	s.Partitions = int(math.Ceil(float64(bucketShare) * float64(s.Work) / float64(period)))
	s.Partitions = min(max(s.Partitions, minPartitions), maxPartitions)
	s.Bucket = s.Work / time.Duration(s.Partitions)
	busy := busyShare * spreadShare * float64(period)
	s.Workers = max(int(math.Ceil(float64(s.Work)/busy)), 2)
	s.FitsOneNode = s.Workers <= cores
	s.TableBytes = float64(users) * c.Bytes
	s.WALPerCycle = float64(users) * c.WAL
	// The table in shared buffers, up to a quarter of memory (the page
	// cache holds the rest); never below PostgreSQL's default.
	s.SharedBuffers = max(min(s.TableBytes*1.25, memory/4), 128<<20)
	// The WAL of a checkpoint interval, with a margin, so that checkpoints
	// come from the timer rather than from WAL volume; never below the
	// default.
	s.MaxWALSize = max(s.WALPerCycle*float64(checkpointTimeout)/float64(period)*1.5, 1<<30)
	return s
}
