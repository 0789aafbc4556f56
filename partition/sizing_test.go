package partition

import (
	"testing"
	"time"
)

func TestSizeFollowsTheWork(t *testing.T) {
	const gib = 1 << 30
	costs := Costs{Work: 2 * time.Microsecond, WAL: 150, Bytes: 160}
	for _, c := range []struct {
		name                string
		users               int64
		period              time.Duration
		partitions, workers int
		fits                bool
	}{
		// 2 s of work: the fewest partitions, two workers.
		{"1M a minute", 1_000_000, time.Minute, 60, 2, true},
		// 20 s of work in 30 s: a bucket of period/100 needs 67 partitions.
		{"10M every 30s", 10_000_000, 30 * time.Second, 67, 2, true},
		// 200 s of work a minute: 5 busy workers, more than 2 cores.
		{"100M a minute", 100_000_000, time.Minute, 334, 5, false},
		// Beyond the most partitions, buckets grow instead.
		{"1G a minute", 1_000_000_000, time.Minute, 1000, 50, false},
	} {
		s := Size(c.users, c.period, 2, 24*gib, costs, 60, 1000)
		if s.Partitions != c.partitions || s.Workers != c.workers || s.FitsOneNode != c.fits {
			t.Errorf("%s: %d partitions, %d workers, fits %v; want %d, %d, %v", c.name,
				s.Partitions, s.Workers, s.FitsOneNode, c.partitions, c.workers, c.fits)
		}
		if want := time.Duration(c.users) * costs.Work; s.Work != want {
			t.Errorf("%s: work %v, want %v", c.name, s.Work, want)
		}
		if c.partitions < 1000 && s.Bucket > c.period/100 {
			t.Errorf("%s: a bucket takes %v, more than a hundredth of the %v period", c.name, s.Bucket, c.period)
		}
		if s.SharedBuffers > 6*gib || s.SharedBuffers < 128<<20 {
			t.Errorf("%s: shared_buffers %.0f MiB, want between the default and a quarter of memory", c.name, s.SharedBuffers/(1<<20))
		}
		// max_wal_size holds a checkpoint interval's WAL.
		if perInterval := s.WALPerCycle * float64(5*time.Minute/c.period); s.MaxWALSize < perInterval {
			t.Errorf("%s: max_wal_size %.1f GiB, under the %.1f GiB written between timed checkpoints", c.name, s.MaxWALSize/gib, perInterval/gib)
		}
	}
}
