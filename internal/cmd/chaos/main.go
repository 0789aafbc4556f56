// Command chaos runs pointsd's fault matrix and writes docs/RELIABILITY.md
// from the run. It starts a PostgreSQL of its own (internal/localpg, on a
// fixed loopback port so that it can be stopped and started again under the
// replicas' feet) and pointsd replicas as child processes, then breaks one
// thing per scenario: the database restarted, down or its sessions killed,
// the leader killed or stopped mid-cycle, hostile and overwhelming clients,
// a read-only replica, damaged state. After each fault it waits for
// recovery and checks what users rely on (see invariants.go). A failed
// invariant is reported, not fatal: the next scenario starts from a healthy
// cluster again, and the exit status is 1 if anything failed.
//
// `make chaos` runs it. Everything is bounded by deadlines, listens on
// 127.0.0.1 only, and every child process is killed on exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	pointsd string        // the binary under test
	dir     string        // working folder: the cluster and the replicas' logs
	out     string        // folder for RELIABILITY.md
	users   int64         // users seeded
	period  time.Duration // the replicas' -period
	only    []string      // scenarios to run; all when empty
	args    []string      // as given, for the report
}

func main() {
	os.Exit(run())
}

func run() int {
	var c config
	flag.StringVar(&c.pointsd, "pointsd", "bin/pointsd", "pointsd binary under test")
	flag.StringVar(&c.dir, "dir", ".data/chaos", "working folder: the PostgreSQL cluster and the replicas' logs")
	flag.StringVar(&c.out, "out", "docs", "folder RELIABILITY.md is written to (not with -only: then the report is printed)")
	flag.Int64Var(&c.users, "users", 200_000, "users to seed")
	flag.DurationVar(&c.period, "period", 6*time.Second, "the replicas' -period, at least 2s")
	only := flag.String("only", "", "comma-separated scenario names to run (see -list); the report is printed, not written")
	list := flag.Bool("list", false, "list the scenarios and exit")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up on the scenarios not started after this long (each is also bounded by 4 min)")
	flag.Parse()
	c.args = os.Args
	log.SetFlags(log.Ltime)
	if *list {
		for _, s := range scenarios() {
			fmt.Printf("%-24s %s\n", s.name, s.title)
		}
		return 0
	}
	if c.period < 2*time.Second || c.users < 1000 {
		log.Print("chaos: -period must be at least 2s and -users at least 1000")
		return 2
	}
	selected, err := selectScenarios(*only)
	if err != nil {
		log.Print("chaos: ", err)
		return 2
	}
	c.only = splitList(*only)
	if _, err := os.Stat(c.pointsd); err != nil {
		log.Printf("chaos: %v (make chaos builds it)", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	e, err := newEnv(ctx, c)
	if err != nil {
		log.Print("chaos: ", err)
		if e != nil {
			e.close()
		}
		return 1
	}
	defer e.close()

	runCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var results []*result
	for _, s := range selected {
		if ctx.Err() != nil {
			break
		}
		if runCtx.Err() != nil {
			results = append(results, &result{name: s.name, title: s.title, started: time.Now(), ended: time.Now(),
				err: fmt.Errorf("not run: the run's -timeout of %s had passed", *timeout)})
			continue
		}
		log.Printf("── %s: %s", s.name, s.title)
		r := e.runScenario(runCtx, s)
		results = append(results, r)
		log.Printf("   %s in %s", r.verdict(), r.ended.Sub(r.started).Round(time.Second))
		for _, ck := range r.checks {
			if !ck.ok {
				log.Printf("   FAIL %s: %s", ck.name, ck.detail)
			}
		}
		if r.err != nil {
			log.Printf("   ERROR %v", r.err)
		}
	}
	rep := &report{cfg: c, started: start, took: time.Since(start), results: results, env: e.describe(ctx), code: codeUnderTest(ctx, c.pointsd)}
	if ctx.Err() != nil {
		log.Print("chaos: interrupted; nothing written")
		return 1
	}
	if len(c.only) > 0 {
		md, err := rep.markdown()
		if err != nil {
			log.Print("chaos: ", err)
			return 1
		}
		fmt.Print(md)
	} else {
		path, err := rep.write(c.out)
		if err != nil {
			log.Print("chaos: ", err)
			return 1
		}
		log.Printf("wrote %s in %s", path, rep.took.Round(time.Second))
	}
	failed := 0
	for _, r := range results {
		if !r.pass() {
			failed++
		}
	}
	if failed > 0 {
		log.Printf("chaos: %d of %d scenarios failed", failed, len(results))
		return 1
	}
	return 0
}

// selectScenarios returns the scenarios named in only (all when empty), in
// the matrix's order.
func selectScenarios(only string) ([]scenario, error) {
	all := scenarios()
	names := splitList(only)
	if len(names) == 0 {
		return all, nil
	}
	var out []scenario
	for _, n := range names {
		if !slices.ContainsFunc(all, func(s scenario) bool { return s.name == n }) {
			return nil, fmt.Errorf("unknown scenario %q (see -list)", n)
		}
	}
	for _, s := range all {
		if slices.Contains(names, s.name) {
			out = append(out, s)
		}
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// raiseFileLimit lifts the soft limit on open files to the hard one: the
// connection scenarios hold thousands of sockets, and the replicas, started
// after this, inherit the limit (setting it explicitly stops Go from
// restoring the original limit in children).
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

// sleepCtx waits d or until ctx ends, and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
