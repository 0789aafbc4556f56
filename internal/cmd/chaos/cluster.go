package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pointsd/pointsd/internal/localpg"
)

// dbName is the database the replicas use; the harness drops and recreates
// it at will, on a cluster of its own.
const dbName = "pointsd_chaos"

// cluster is the PostgreSQL server the harness runs, and the database on it.
type cluster struct {
	dir      string // data folder (absolute)
	port     int    // fixed, so replicas reconnect to the same address after a restart
	bin      string // the server binaries' folder
	settings map[string]string
	log      io.Writer // initdb's and pg_ctl's output

	adminURL string        // the postgres database, as superuser
	url      string        // dbName, as superuser
	db       *pgxpool.Pool // the harness's own connections to dbName
}

// startCluster starts a cluster in dir (stopping one a killed run left
// behind, so that it runs with these settings and port), with extra
// settings on top of the harness's.
func startCluster(ctx context.Context, dir string, log io.Writer, extra map[string]string) (*cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	bin, err := localpg.BinDir(ctx)
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: abs, bin: bin, log: log, settings: map[string]string{
		"shared_buffers": "256MB", "max_wal_size": "2GB", "max_connections": "300",
	}}
	maps.Copy(c.settings, extra)
	if _, err := os.Stat(filepath.Join(abs, "postmaster.pid")); err == nil {
		_ = c.pgctl(ctx, "stop", "-D", abs, "-m", "fast", "-w", "-t", "30")
	}
	if c.port, err = localpg.FreePort(ctx); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// start starts the server (again), the way localpg does, on c.port.
func (c *cluster) start(ctx context.Context) error {
	srv, err := localpg.Start(ctx, localpg.Config{Dir: c.dir, Settings: c.settings, Port: c.port, Log: c.log})
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.adminURL = srv.URL
	c.url = strings.Replace(srv.URL, "/postgres?", "/"+dbName+"?", 1)
	return nil
}

// stop stops the server with pg_ctl's mode: "fast" (disconnect everyone,
// shut down cleanly) or "immediate" (abort; crash recovery at next start).
func (c *cluster) stop(ctx context.Context, mode string) error {
	if err := c.pgctl(ctx, "stop", "-D", c.dir, "-m", mode, "-w", "-t", "60"); err != nil {
		return fmt.Errorf("stop postgres -m %s: %w", mode, err)
	}
	return nil
}

// running reports whether the server answers.
func (c *cluster) running(ctx context.Context) bool {
	return c.pgctl(ctx, "status", "-D", c.dir) == nil
}

// pgctl runs pg_ctl, as the postgres user when running as root (the server
// runs as that user, see localpg).
func (c *cluster) pgctl(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	name := filepath.Join(c.bin, "pg_ctl")
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // pg_ctl from PATH or pg_config, with the harness's own arguments
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...) //nolint:gosec // as above, as the postgres user
	}
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(c.log, &out)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, lastLine(out.String()))
	}
	return nil
}

// close stops the server cleanly.
func (c *cluster) close() {
	if c.db != nil {
		c.db.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c.running(ctx) {
		if err := c.stop(ctx, "fast"); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
		}
	}
}

// resetDB drops and recreates the database, then has pointsd migrate it and
// seed it with users, and installs the cycle history (history.go) and the
// truth record (truth.go).
func (c *cluster) resetDB(ctx context.Context, pointsd string, users int64) error {
	if c.db != nil {
		c.db.Close()
		c.db = nil
	}
	conn, err := pgx.Connect(ctx, c.adminURL)
	if err != nil {
		return err
	}
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + dbName + " WITH (FORCE)",
		"CREATE DATABASE " + dbName,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			_ = conn.Close(ctx) // the statement's error is the one to report
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	_ = conn.Close(ctx) // the database is made: a failed goodbye changes nothing
	return c.prepareDB(ctx, pointsd, users)
}

// prepareDB has pointsd migrate the new database at c.url and seed it
// with users, opens the harness's pool on it, and installs the cycle
// history (history.go) and the truth record (truth.go).
func (c *cluster) prepareDB(ctx context.Context, pointsd string, users int64) error {
	for _, args := range [][]string{{"migrate"}, {"seed", "-users", fmt.Sprint(users)}} {
		if out, err := runPointsd(ctx, pointsd, c.url, args...); err != nil {
			return fmt.Errorf("pointsd %s: %w: %s", strings.Join(args, " "), err, lastLine(out))
		}
	}
	cfg, err := pgxpool.ParseConfig(c.url)
	if err != nil {
		return err
	}
	cfg.MaxConns = 4
	// Not "pointsd…": the session-killing scenario must spare the harness.
	cfg.ConnConfig.RuntimeParams["application_name"] = "chaos"
	cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	if c.db, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return err
	}
	if err := installHistory(ctx, c.db); err != nil {
		return err
	}
	return installTruth(ctx, c.db)
}

// runPointsd runs a pointsd command against dbURL and returns what it
// printed.
func runPointsd(ctx context.Context, bin, dbURL string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // bin is our own build of pointsd
	cmd.Env = childEnv(dbURL)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// childEnv is the harness's environment without anything that would
// configure pointsd behind its back, plus DATABASE_URL.
func childEnv(dbURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POINTSD_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	return append(env, "DATABASE_URL="+dbURL)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
