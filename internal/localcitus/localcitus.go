// Package localcitus starts a throwaway Citus cluster on this machine: a
// coordinator and workers, each a PostgreSQL server started by localpg from
// the installed binaries with the citus extension preloaded, on loopback.
//
// It exists for the Citus tests and the Citus benchmark; pointsd itself
// never starts a database. Citus (AGPL-3.0) runs inside those servers;
// nothing of it is linked into pointsd.
package localcitus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/pointsd/pointsd/internal/localpg"
)

// Settings are every node's server settings: Citus preloaded, room for
// the two-phase commits of every bucket, prepared transactions that a
// worker crash left behind recovered within a second or so rather than the
// default minute, connections between nodes that give up on a peer gone
// silent within 10 s rather than TCP's 15 minutes (the settings
// docs/CITUS.md recommends, which pgsql.Citus.Warnings checks), and no
// TLS between nodes (the servers may run as the postgres user with root's
// HOME, where libpq would look for client certificates).
var Settings = map[string]string{
	"shared_preload_libraries":   "citus",
	"max_prepared_transactions":  "300",
	"max_connections":            "300",
	"citus.recover_2pc_interval": "1s",
	"citus.node_conninfo":        "'sslmode=disable tcp_user_timeout=10000 keepalives_idle=5 keepalives_interval=2 keepalives_count=3'",
}

// Node is one server of the cluster.
type Node struct {
	Dir  string
	Port int
	URL  string // its postgres database, as the superuser

	settings map[string]string
	srv      *localpg.Server
}

// Cluster is a running coordinator and its workers.
type Cluster struct {
	Coordinator *Node
	Workers     []*Node
}

// Nodes is the coordinator, then the workers.
func (c *Cluster) Nodes() []*Node { return append([]*Node{c.Coordinator}, c.Workers...) }

// Installed says why the citus extension cannot be used here, nil when it
// is installed into the local PostgreSQL.
func Installed(ctx context.Context) error {
	bin, err := localpg.BinDir(ctx)
	if err != nil {
		return err
	}
	lib := filepath.Join(filepath.Dir(bin), "lib")
	for _, pgConfig := range []string{filepath.Join(bin, "pg_config"), "pg_config"} {
		if out, err := exec.CommandContext(ctx, pgConfig, "--pkglibdir").Output(); err == nil { //nolint:gosec // the installed pg_config
			lib = strings.TrimSpace(string(out))
			break
		}
	}
	if _, err := os.Stat(filepath.Join(lib, "citus.so")); err != nil {
		return fmt.Errorf("the citus extension is not installed in %s: run ../shared/citus/build-citus.sh (as root)", lib)
	}
	return nil
}

// Start starts a coordinator and n workers in folders under base (which
// must exist), with Settings and extra (which wins) as their settings. On
// error, whatever started is stopped.
func Start(ctx context.Context, base string, workers int, extra map[string]string) (*Cluster, error) {
	if err := Installed(ctx); err != nil {
		return nil, err
	}
	// The servers may run as the postgres user, who must reach their folders.
	if err := os.Chmod(base, 0o755); err != nil { //nolint:gosec // o+x: see above
		return nil, err
	}
	settings := maps.Clone(Settings)
	maps.Copy(settings, extra)
	c := &Cluster{Coordinator: &Node{Dir: filepath.Join(base, "coordinator"), settings: settings}}
	for i := range workers {
		c.Workers = append(c.Workers, &Node{Dir: filepath.Join(base, fmt.Sprintf("worker%d", i+1)), settings: settings})
	}
	var g errgroup.Group
	for _, n := range c.Nodes() {
		g.Go(func() error { return n.Start(ctx) })
	}
	if err := g.Wait(); err != nil {
		_ = c.Stop(ctx)
		return nil, err
	}
	return c, nil
}

// Start starts (or restarts, on its port) n's server.
func (n *Node) Start(ctx context.Context) error {
	srv, err := localpg.Start(ctx, localpg.Config{Dir: n.Dir, Port: n.Port, Settings: n.settings})
	if err != nil {
		return err
	}
	u, err := url.Parse(srv.URL)
	if err != nil {
		return err
	}
	n.srv, n.URL = srv, srv.URL
	n.Port, err = strconv.Atoi(u.Port())
	return err
}

// Crash stops n at once, as a crash would: SIGQUIT to its postmaster, no
// checkpoint, prepared transactions kept for recovery. Start starts it
// again on the same port.
func (n *Node) Crash(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(n.Dir, "postmaster.pid")) //nolint:gosec // the server's own pid file
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		return err
	}
	for syscall.Kill(pid, 0) == nil { // poll: the postmaster's exit is the only signal
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Stop stops every node this process started.
func (c *Cluster) Stop(ctx context.Context) error {
	var errs []error
	for _, n := range c.Nodes() {
		if n.srv != nil {
			errs = append(errs, n.srv.Stop(ctx))
		}
	}
	return errors.Join(errs...)
}

// CreateDB creates database name on every node (on the coordinator only
// when workers is 0), with the citus extension in each, and registers the
// coordinator and the first workers workers in it; the others can join
// later (AddNodeSQL). It returns the coordinator's URL for it.
func (c *Cluster) CreateDB(ctx context.Context, name string, workers int) (string, error) {
	return c.CreateDBVia(ctx, name, workers, nil)
}

// CreateDBVia is CreateDB with some workers registered at another address
// (a proxy in front of them): worker i (1..) at via[i], host:port, if
// there is one. The coordinator then reaches that worker only that way.
func (c *Cluster) CreateDBVia(ctx context.Context, name string, workers int, via map[int]string) (string, error) {
	nodes := c.Nodes()
	if workers == 0 {
		nodes = nodes[:1]
	}
	var g errgroup.Group
	for _, n := range nodes {
		g.Go(func() error {
			if err := Exec(ctx, n.URL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
				return err
			}
			return Exec(ctx, DBURL(n.URL, name), "CREATE EXTENSION citus")
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	u := DBURL(c.Coordinator.URL, name)
	if workers == 0 {
		return u, nil
	}
	stmts := []string{fmt.Sprintf("SELECT citus_set_coordinator_host('127.0.0.1', %d)", c.Coordinator.Port)}
	for i, w := range c.Workers[:min(workers, len(c.Workers))] {
		if addr, ok := via[i+1]; ok {
			host, p, err := net.SplitHostPort(addr)
			port, perr := strconv.Atoi(p)
			if err = cmp.Or(err, perr); err != nil {
				return "", fmt.Errorf("worker %d via %q: %w", i+1, addr, err)
			}
			stmts = append(stmts, fmt.Sprintf("SELECT citus_add_node(%s, %d)", pgQuote(host), port))
			continue
		}
		stmts = append(stmts, AddNodeSQL(w))
	}
	return u, Exec(ctx, u, stmts...)
}

// AddNodeSQL registers worker w with the coordinator of the database it
// runs in.
func AddNodeSQL(w *Node) string {
	return fmt.Sprintf("SELECT citus_add_node('127.0.0.1', %d)", w.Port)
}

func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// DropDB drops database name on every node. WITH (FORCE) ends the
// database's sessions, but a Citus maintenance daemon can start again in the
// moment between that and the drop (another node's daemon connects to run
// its two-phase commit recovery), and the drop then fails with 55006
// "being accessed by other users": it is tried again, for up to 30 s.
func (c *Cluster) DropDB(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	drop := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
	var errs []error
	for _, n := range c.Nodes() {
		for {
			err := Exec(ctx, n.URL, drop)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "55006" || ctx.Err() != nil {
				if err != nil {
					errs = append(errs, fmt.Errorf("node on port %d: %w", n.Port, err))
				}
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// Exec runs stmts, in order, on a connection of their own to url.
func Exec(ctx context.Context, url string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }() // the statements' errors are what matter
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// DBURL is base (a postgres:// URL) pointing at database name.
func DBURL(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = "/" + name
	return u.String()
}
