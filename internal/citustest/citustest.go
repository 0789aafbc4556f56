// Package citustest gives tests a real Citus cluster: a coordinator and two
// workers, three PostgreSQL servers started from the installed binaries
// with the citus extension preloaded, one cluster per test binary, and one
// fresh distributed database per test.
//
// Citus (AGPL-3.0) runs in those servers only; pointsd talks to the
// coordinator as to any PostgreSQL. Without the citus extension installed
// the tests skip with the reason, unless POINTSD_REQUIRE_CITUS=1 (set by
// CI when it installed Citus), which fails the run instead.
package citustest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/pointsd/pointsd/internal/localpg"
	"github.com/pointsd/pointsd/sql"
)

// Workers is the number of worker nodes of the test cluster.
const Workers = 2

// Node is one server of the cluster.
type Node struct {
	Dir  string
	Port int
	URL  string // its postgres database, as the superuser
	srv  *localpg.Server
}

var (
	nodes   []*Node // the coordinator, then the workers
	skipWhy string
	prefix  = fmt.Sprintf("pointsd_citus_%d_", os.Getpid())
	counter atomic.Int64
	setupMu sync.Mutex
)

// settings are every node's: Citus preloaded, durability off (a
// throwaway cluster), room for the two-phase commits of every bucket, and
// prepared transactions that a worker crash left behind recovered within
// seconds rather than the default minute (see docs/CITUS.md).
var settings = map[string]string{
	"shared_preload_libraries":   "citus",
	"fsync":                      "off",
	"synchronous_commit":         "off",
	"full_page_writes":           "off",
	"max_connections":            "300",
	"max_prepared_transactions":  "300",
	"citus.recover_2pc_interval": "1s",
	// The servers may run as the postgres user with root's HOME: no
	// client certificates to look for between nodes on loopback.
	"citus.node_conninfo": "'sslmode=disable'",
}

// Main runs a package's tests with a Citus cluster, stops it afterwards
// and fails the run if goroutines leaked. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	base, err := start(ctx)
	if base != "" {
		defer func() { _ = os.RemoveAll(base) }() // best effort: a temporary folder
	}
	if err != nil {
		skipWhy = err.Error()
		if os.Getenv("POINTSD_REQUIRE_CITUS") == "1" {
			fmt.Fprintln(os.Stderr, "citustest: POINTSD_REQUIRE_CITUS=1 but no Citus cluster:", skipWhy)
			stopAll(ctx)
			return 1
		}
	}
	code := m.Run()
	stopAll(ctx)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "citustest: leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// Installed reports whether the citus extension is installed into the local
// PostgreSQL, and if not why.
func Installed(ctx context.Context) error {
	bin, err := localpg.BinDir(ctx)
	if err != nil {
		return err
	}
	lib := filepath.Join(filepath.Dir(bin), "lib")
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_config"), "--pkglibdir").Output(); err == nil {
		lib = strings.TrimSpace(string(out))
	} else if out, err := exec.CommandContext(ctx, "pg_config", "--pkglibdir").Output(); err == nil {
		lib = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(lib, "citus.so")); err != nil {
		return fmt.Errorf("the citus extension is not installed in %s: run ../shared/citus/build-citus.sh (as root)", lib)
	}
	return nil
}

// start starts the coordinator and the workers, in a folder of their own
// it returns.
func start(ctx context.Context) (string, error) {
	if err := Installed(ctx); err != nil {
		return "", err
	}
	base, err := os.MkdirTemp("", "pointsd-citus-")
	if err != nil {
		return "", err
	}
	// The servers may run as the postgres user, who must reach their folders.
	if err := os.Chmod(base, 0o755); err != nil { //nolint:gosec // o+x: see above
		return base, err
	}
	var g errgroup.Group
	nodes = make([]*Node, 1+Workers)
	for i := range nodes {
		name := "coordinator"
		if i > 0 {
			name = fmt.Sprintf("worker%d", i)
		}
		n := &Node{Dir: filepath.Join(base, name)}
		nodes[i] = n
		g.Go(func() error { return n.start(ctx) })
	}
	return base, g.Wait()
}

// start starts (or restarts, on its port) n's server.
func (n *Node) start(ctx context.Context) error {
	srv, err := localpg.Start(ctx, localpg.Config{Dir: n.Dir, Port: n.Port, Settings: settings})
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

func stopAll(ctx context.Context) {
	for _, n := range nodes {
		if n != nil && n.srv != nil {
			if err := n.srv.Stop(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "citustest: stop server:", err)
			}
		}
	}
}

// Coordinator is the coordinator node.
func Coordinator() *Node { return nodes[0] }

// Worker is worker i (1..Workers).
func Worker(i int) *Node { return nodes[i] }

// Crash stops worker i at once, as a crash would (SIGQUIT to its
// postmaster: no checkpoint, prepared transactions kept for recovery), and
// returns a function that starts it again on the same port.
func Crash(t testing.TB, i int) (restart func()) {
	t.Helper()
	n := nodes[i]
	pidFile := filepath.Join(n.Dir, "postmaster.pid")
	b, err := os.ReadFile(pidFile) //nolint:gosec // the test server's own pid file
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil { // poll: the postmaster's exit is the only signal
		if time.Now().After(deadline) {
			t.Fatal("the worker did not stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() {
		t.Helper()
		if err := n.start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// Options shape a test database.
type Options struct {
	Partitions int   // users partitions; 0 means 4
	Users      int64 // seeded users 1..n
	// NoMigrate leaves the schema out: the database only has the citus
	// extension on every node and its workers registered.
	NoMigrate bool
	// NoWorkers creates the extension on the coordinator only, with no
	// worker registered: a half set up cluster.
	NoWorkers bool
}

// NewDB creates a database on every node with the citus extension, the
// workers registered on the coordinator, pointsd's schema migrated and
// distributed and opts.Users seeded, dropped when t ends. It returns the
// coordinator's URL for it, and skips t without Citus.
func NewDB(t testing.TB, opts Options) string {
	t.Helper()
	if skipWhy != "" {
		t.Skip("no Citus cluster for tests: " + skipWhy)
	}
	ctx := context.Background()
	name := prefix + strconv.FormatInt(counter.Add(1), 10)
	// One database set up at a time: citus_add_node run in two databases at
	// once fails now and then (a connection "marked as essential").
	setupMu.Lock()
	defer setupMu.Unlock()
	targets := nodes
	if opts.NoWorkers {
		targets = nodes[:1]
	}
	var g errgroup.Group
	for _, n := range targets {
		g.Go(func() error {
			if err := exec1(ctx, n.URL, "CREATE DATABASE "+ident(name)); err != nil {
				return err
			}
			return exec1(ctx, dbURL(n.URL, name), "CREATE EXTENSION citus")
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range targets {
			if err := exec1(ctx, n.URL, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
				t.Error(err)
			}
		}
	})
	u := dbURL(nodes[0].URL, name)
	if !opts.NoWorkers {
		stmts := []string{fmt.Sprintf("SELECT citus_set_coordinator_host('127.0.0.1', %d)", nodes[0].Port)}
		for _, w := range nodes[1:] {
			stmts = append(stmts, fmt.Sprintf("SELECT citus_add_node('127.0.0.1', %d)", w.Port))
		}
		if err := exec1(ctx, u, stmts...); err != nil {
			t.Fatal(err)
		}
	}
	if opts.NoMigrate {
		return u
	}
	pool := Pool(t, u)
	if err := pgsql.Migrate(ctx, pool, cmp.Or(opts.Partitions, 4), nil); err != nil {
		t.Fatal(err)
	}
	if opts.Users > 0 {
		if _, err := pgsql.Seed(ctx, pool, opts.Users, 2, nil); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// Pool opens a pool on url, closed when t ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// OffDraw counts users whose points are not the draw their bucket records
// (0 for a bucket never rewritten): pgtest.OffDraw on Citus, where a
// user's bucket is not its tableoid (that is a shard's, on a worker). One
// statement per bucket, each on that bucket's partition, with the bucket's
// cycle and seed read first: call it when no cycle runs.
func OffDraw(t testing.TB, db pgsql.DBTX) int64 {
	t.Helper()
	ctx := context.Background()
	buckets, err := pgsql.Buckets(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range buckets {
		if b.Partition == nil {
			t.Fatalf("bucket %d has no partition", b.Index)
		}
		var seed int64
		if err := db.QueryRow(ctx, `SELECT seed FROM buckets WHERE bucket = $1`, b.Index).Scan(&seed); err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := db.QueryRow(ctx, `SELECT count(*) FROM `+b.Partition.Sanitize()+`
			WHERE points <> CASE WHEN $1::bigint = 0 THEN 0 ELSE pointsd_draw(id, $2) END`, b.Cycle, seed).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// PreparedOnWorkers counts the two-phase transactions prepared and not yet
// committed or rolled back on the workers: a bucket's commit still half
// done.
func PreparedOnWorkers(t testing.TB, db pgsql.DBTX) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), `
		SELECT coalesce(sum(result::bigint), 0) FROM run_command_on_workers('SELECT count(*) FROM pg_prepared_xacts')
		WHERE success`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func exec1(ctx context.Context, url string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("citustest: connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }() // the statements' errors are what matter
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("citustest: %s: %w", s, err)
		}
	}
	return nil
}

func dbURL(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		panic(errors.New("citustest: a node's URL does not parse: " + err.Error()))
	}
	u.Path = "/" + name
	return u.String()
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }
