// Command citusbench measures pointsd on one PostgreSQL beside pointsd on
// a local Citus cluster (a coordinator and two workers on this machine),
// with the same server settings, and prints the figures of docs/CITUS.md as
// Markdown: seed, strict cycle, rolling cycle work and bucket times, GET /
// requests per second (from the cache and from the database), then what
// adding a third worker and rebalancing does.
//
// It starts every server itself under -dir and stops them at the end; it
// never touches DATABASE_URL. Run it with make citusbench.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	neturl "net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pointsd/pointsd/internal/host"
	"github.com/pointsd/pointsd/internal/localcitus"
	"github.com/pointsd/pointsd/internal/localpg"
)

// settings are make run's (see internal/cmd/devrun), on every server.
var settings = map[string]string{
	"shared_buffers": "512MB", "max_wal_size": "4GB", "max_connections": "300",
}

type config struct {
	pointsd string
	users   int64
	dir     string
	cycles  int
	design  bool // also measure the one-worker-bucket prototype
	rebal   bool // also add a third worker and rebalance
	load    time.Duration
	options string // server options for pointsd's sessions on Citus
	out     io.Writer
}

func main() {
	var c config
	flag.StringVar(&c.pointsd, "pointsd", "bin/pointsd", "the pointsd binary")
	flag.Int64Var(&c.users, "users", 1_000_000, "users to seed")
	flag.StringVar(&c.dir, "dir", ".data/citusbench", "folder for the servers (emptied first)")
	flag.IntVar(&c.cycles, "cycles", 3, "cycles of each mode")
	flag.BoolVar(&c.design, "design", true, "also measure buckets that live on one worker (a prototype)")
	flag.BoolVar(&c.rebal, "rebalance", true, "also add a third worker and rebalance")
	flag.StringVar(&c.options, "options", "", "libpq options for pointsd's sessions on the Citus cluster (e.g. -c citus.max_adaptive_executor_pool_size=1)")
	flag.DurationVar(&c.load, "load", 10*time.Second, "how long wrk loads GET / for each setup")
	flag.Parse()
	c.out = os.Stdout
	log.SetFlags(log.Ltime)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c config) error {
	abs, err := filepath.Abs(c.pointsd)
	if err != nil {
		return err
	}
	c.pointsd = abs
	if err := os.RemoveAll(c.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil { //nolint:gosec // the servers may run as the postgres user
		return err
	}
	fmt.Fprintf(c.out, "Machine: %s. %d users, %d cycles of each mode; every server with shared_buffers 512MB, max_wal_size 4GB.\n\n",
		fmt.Sprintf("%s, %d cores, %s", host.CPUModel(), runtime.NumCPU(), host.MemTotal()), c.users, c.cycles)

	// One PostgreSQL.
	single, err := localpg.Start(ctx, localpg.Config{Dir: filepath.Join(c.dir, "single"), Settings: settings})
	if err != nil {
		return err
	}
	defer func() { _ = single.Stop(context.Background()) }()
	if err := localcitus.Exec(ctx, single.URL, "CREATE DATABASE pointsd"); err != nil {
		return err
	}
	one, err := measure(ctx, c, "one PostgreSQL", localcitus.DBURL(single.URL, "pointsd"))
	if err != nil {
		return err
	}
	_ = single.Stop(ctx) // free its memory and cores for the cluster

	// A coordinator and two workers (a third started, not yet registered).
	cl, err := localcitus.Start(ctx, c.dir, 3, settings)
	if err != nil {
		return err
	}
	defer func() { _ = cl.Stop(context.Background()) }()
	url, err := cl.CreateDB(ctx, "pointsd", 2)
	if err != nil {
		return err
	}
	if c.options != "" {
		url += "&options=" + strings.ReplaceAll(neturl.QueryEscape(c.options), "+", "%20")
		fmt.Fprintf(c.out, "pointsd's sessions on Citus run with `%s`.\n\n", c.options)
	}
	dist, err := measure(ctx, c, "Citus, 2 workers", url)
	if err != nil {
		return err
	}
	printTable(c.out, []result{one, dist})
	if c.design {
		if err := oneWorkerBuckets(ctx, c, url); err != nil {
			return err
		}
	}
	if c.rebal {
		if err := rebalance(ctx, c, cl, url); err != nil {
			return err
		}
	}
	return nil
}

// durations formats ds as "a / b / c".
func durations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(s, " / ")
}
