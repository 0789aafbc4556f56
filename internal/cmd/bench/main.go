// Command bench measures pointsd against the classic approach to the
// exercise, side by side in one run on one machine, and writes
// docs/BENCHMARKS.md with its plots. `make bench` runs it against a
// PostgreSQL of its own (see internal/cmd/devrun); DATABASE_URL names the
// database it may drop and recreate at will.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type config struct {
	pointsd, static string // binaries
	out             string
	users           int64
	cycles          int
	period          time.Duration
	rate            int
	dbURL           string
	scale           []int64       // the scale benchmark's sizes
	scalePeriod     time.Duration // its paced run's period
}

func main() {
	var c config
	flag.StringVar(&c.pointsd, "pointsd", "bin/pointsd", "pointsd binary")
	flag.StringVar(&c.static, "static", "bin/staticserve", "static HTTP server binary")
	flag.StringVar(&c.out, "out", "docs", "folder for BENCHMARKS.md and its plots")
	flag.Int64Var(&c.users, "users", 1_000_000, "users")
	flag.IntVar(&c.cycles, "cycles", 20, "full updates per approach")
	flag.DurationVar(&c.period, "period", 20*time.Second, "period of the load-spread runs (two are measured per mode)")
	flag.IntVar(&c.rate, "rate", 2000, "open-loop GET / requests per second in the load-spread runs")
	only := flag.String("only", "", "run only this step (seed, updates, spread, throughput) and print, not write, the results")
	scale := flag.String("scale", "", "run the scale benchmark instead, at these numbers of users (comma-separated), on a server of its own")
	scaleDir := flag.String("scale-dir", ".data/scale", "the scale benchmark's PostgreSQL cluster")
	flag.DurationVar(&c.scalePeriod, "scale-period", 30*time.Second, "period of the scale benchmark's paced run at its largest size")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *scale != "" {
		for _, f := range strings.Split(*scale, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || n < 1000 {
				log.Fatalf("bench: -scale: %q is not a number of users (at least 1000)", f)
			}
			c.scale = append(c.scale, n)
		}
		if err := benchScale(context.Background(), c, *scaleDir); err != nil {
			log.Fatal("bench: scale: ", err)
		}
		return
	}
	c.dbURL = os.Getenv("DATABASE_URL")
	if c.dbURL == "" {
		log.Fatal("bench: DATABASE_URL is not set (make bench sets it)")
	}
	ctx := context.Background()
	start := time.Now()
	r := &report{started: start, cfg: c}
	if err := resetDB(ctx, c.dbURL); err != nil {
		log.Fatal(err)
	}
	for _, step := range []struct {
		name string
		run  func(context.Context, config, *report) error
	}{
		{"seed", benchSeed},
		{"updates", benchUpdates},
		{"spread", benchSpread},
		{"throughput", benchThroughput},
	} {
		if *only != "" && *only != step.name && step.name != "seed" {
			continue
		}
		log.Printf("%s…", step.name)
		if err := step.run(ctx, c, r); err != nil {
			log.Fatalf("bench: %s: %v", step.name, err)
		}
	}
	r.took = time.Since(start)
	if *only != "" {
		for _, s := range r.spread {
			for i, x := range s.seconds {
				log.Printf("%s %2d p50 %v p99 %v", s.mode, i, x.P50, x.P99)
			}
		}
		return
	}
	if err := r.write(ctx, c); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s/BENCHMARKS.md in %s", c.out, r.took.Round(time.Second))
}

// resetDB drops and recreates the database of dbURL.
func resetDB(ctx context.Context, dbURL string) error {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }() // the statements' errors are what matter
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)",
		"CREATE DATABASE " + pgx.Identifier{name}.Sanitize(),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

func openPool(ctx context.Context, dbURL string, conns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = conns
	return pgxpool.NewWithConfig(ctx, cfg)
}

// hostPort is the database server's address, for pgbench; dbURL may be a
// URL or a key=value string.
func hostPort(dbURL string) (host, port, user, db string) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return "", "", "", ""
	}
	return cfg.Host, strconv.Itoa(int(cfg.Port)), cfg.User, cfg.Database
}
