package main

import (
	"context"
	"log"
	"slices"
	"time"

	"github.com/pointsd/pointsd/internal/load"
	"github.com/pointsd/pointsd/partition"
)

// warmup seconds at the start of each load run are not counted: they open
// the connections.
const warmup = 2

// spreadRun is one mode's per-second latency and WAL rate under a constant
// open-loop load over two full periods.
type spreadRun struct {
	mode     string
	seconds  []load.Second
	walBytes []float64 // per second
}

func benchSpread(ctx context.Context, c config, r *report) error {
	pool, err := openPool(ctx, c.dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The same load on a static handler is the control: the noise of this
	// machine, load generator included, with no pointsd and no database.
	for _, mode := range []string{"strict", "rolling", "static handler (control)"} {
		var p *proc
		var err error
		if mode == "static handler (control)" {
			p, err = startServer(ctx, c, c.static, nil, "/")
		} else {
			p, err = startServer(ctx, c, c.pointsd, []string{"serve", "-mode", mode, "-period", c.period.String()}, "/readyz")
		}
		if err != nil {
			return err
		}
		// Start the load a warm-up before a boundary that leaves the
		// leader time to settle, then run two full periods.
		sched := partition.Slots{Period: c.period, Buckets: 1}
		boundary := sched.NextCycle(time.Now().Add(warmup*time.Second + time.Second))
		time.Sleep(time.Until(boundary.Add(-warmup * time.Second)))
		seconds := warmup + 2*int(c.period.Seconds()) + 1
		run := &spreadRun{mode: mode}

		wal := make([]float64, 0, seconds)
		done := make(chan struct{})
		go func() {
			defer close(done)
			var last float64
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; i <= seconds; i++ {
				var lsn float64
				if err := pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')`).Scan(&lsn); err != nil {
					log.Printf("  wal: %v", err)
				}
				if i > 0 {
					wal = append(wal, lsn-last)
				}
				last = lsn
				<-tick.C
			}
		}()
		secs := load.Run(ctx, p.url("/"), c.rate, seconds, 256)
		<-done
		p.stop()

		run.seconds = secs[warmup:]
		run.walBytes = wal[warmup:min(len(wal), seconds)]
		errs := 0
		for _, s := range run.seconds {
			errs += s.Errors
		}
		log.Printf("  %s: worst second p99 %v, median second p99 %v, %d errors", mode,
			worstP99(run.seconds), medianP99(run.seconds), errs)
		r.spread = append(r.spread, run)
	}
	return nil
}

func p99s(s []load.Second) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = x.P99
	}
	return out
}

func worstP99(s []load.Second) time.Duration  { return slices.Max(p99s(s)) }
func medianP99(s []load.Second) time.Duration { return median(p99s(s)) }
