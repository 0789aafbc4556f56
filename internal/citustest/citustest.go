// Package citustest gives tests a real Citus cluster: a coordinator and two
// workers, three PostgreSQL servers started from the installed binaries
// with the citus extension preloaded (internal/localcitus), one cluster per
// test binary, and one fresh distributed database per test.
//
// Citus (AGPL-3.0) runs in those servers only; pointsd talks to the
// coordinator as to any PostgreSQL. Without the citus extension installed
// the tests skip with the reason, unless POINTSD_REQUIRE_CITUS=1 (set by
// CI when it installed Citus), which fails the run instead.
package citustest

import (
	"cmp"
	"context"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/pointsd/pointsd/internal/localcitus"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// Workers is the number of worker nodes of the test cluster.
const Workers = 2

var (
	cluster *localcitus.Cluster
	skipWhy string
	prefix  = fmt.Sprintf("pointsd_citus_%d_", os.Getpid())
	counter atomic.Int64
	setupMu sync.Mutex
)

// Main runs a package's tests with a Citus cluster, stops it afterwards
// and fails the run if goroutines leaked. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	base, err := os.MkdirTemp("", "pointsd-citus-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "citustest:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(base) }() // best effort: a temporary folder
	// Durability buys nothing for a throwaway cluster.
	cluster, err = localcitus.Start(ctx, base, Workers, map[string]string{
		"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
	})
	if err != nil {
		skipWhy = err.Error()
		if os.Getenv("POINTSD_REQUIRE_CITUS") == "1" {
			fmt.Fprintln(os.Stderr, "citustest: POINTSD_REQUIRE_CITUS=1 but no Citus cluster:", skipWhy)
			return 1
		}
	}
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "citustest: stop the cluster:", err)
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "citustest: leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// CrashWorker stops worker i (1..Workers) at once, as a crash would, and
// returns a function that starts it again on the same port.
func CrashWorker(t testing.TB, i int) (restart func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := cluster.Workers[i-1]
	if err := n.Crash(ctx); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// WorkerPort is worker i's (1..Workers) port.
func WorkerPort(i int) int { return cluster.Workers[i-1].Port }

// WorkerAddr is worker i's (1..Workers) host:port, without Citus, "".
func WorkerAddr(i int) string {
	if cluster == nil {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(WorkerPort(i)))
}

// RegisterNodes registers the coordinator and the workers in the database
// at url (on the coordinator), as citus_set_coordinator_host and
// citus_add_node do by hand.
func RegisterNodes(ctx context.Context, url string) error {
	stmts := []string{fmt.Sprintf("SELECT citus_set_coordinator_host('127.0.0.1', %d)", cluster.Coordinator.Port)}
	for _, w := range cluster.Workers {
		stmts = append(stmts, localcitus.AddNodeSQL(w))
	}
	return localcitus.Exec(ctx, url, stmts...)
}

// ExecOnWorker runs stmt on worker i (1..Workers), in the database the
// coordinator's url names.
func ExecOnWorker(ctx context.Context, i int, url, stmt string) error {
	u, err := neturl.Parse(url)
	if err != nil {
		return err
	}
	return localcitus.Exec(ctx, localcitus.DBURL(cluster.Workers[i-1].URL, strings.TrimPrefix(u.Path, "/")), stmt)
}

// PreparedOnWorker counts the two-phase transactions prepared on worker i
// (1..Workers) for the database the coordinator's url names, asked of the
// worker directly: whatever the coordinator's path to it.
func PreparedOnWorker(t testing.TB, i int, url string) int64 {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	conn, err := pgx.Connect(context.Background(), localcitus.DBURL(cluster.Workers[i-1].URL, db))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int64
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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
	// WorkerVia registers worker i (1..Workers) at WorkerVia[i], host:port
	// (a faultproxy in front of it), rather than at its own port.
	WorkerVia map[int]string
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
	workers := Workers
	if opts.NoWorkers {
		workers = 0
	}
	u, err := cluster.CreateDBVia(ctx, name, workers, opts.WorkerVia)
	t.Cleanup(func() {
		if err := cluster.DropDB(ctx, name); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if opts.NoMigrate {
		return u
	}
	pool := pgtest.Pool(t, u)
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

// OffDraw counts users whose points are not their bucket's draw
// (pointsd_bucket_draw): pgtest.OffDraw on Citus, where a
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
			WHERE points <> pointsd_bucket_draw(id, $1, $2)`, b.Cycle, seed).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// PreparedOnWorkers counts the two-phase transactions prepared and not yet
// committed or rolled back on the workers for db's database: a bucket's
// commit still half done. Other tests' databases, which may hold one on
// purpose, do not count.
func PreparedOnWorkers(t testing.TB, db pgsql.DBTX) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), `
		SELECT coalesce(sum(result::bigint), 0) FROM run_command_on_workers('SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()')
		WHERE success`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
