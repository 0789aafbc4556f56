// Package pgtest gives tests a real PostgreSQL: one server per test binary,
// one fresh database per test, cloned from a migrated template so that tests
// can run in parallel.
//
// The server is, in order: TEST_DATABASE_URL (a role that may create
// databases); a throwaway cluster from the local server binaries; a Docker
// container. With none of them, database tests are skipped with the reason,
// unless POINTSD_REQUIRE_DB=1 (set by CI), which fails the run instead.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/pointsd/pointsd/internal/localpg"
	"github.com/pointsd/pointsd/pgsql"
)

var (
	adminURL  string // the server's maintenance database; "" when none
	skipWhy   string // why there is no server
	prefix    = fmt.Sprintf("pointsd_test_%d_", os.Getpid())
	counter   atomic.Int64
	templates sync.Map // partitions → *template
)

type template struct {
	once sync.Once
	name string
	err  error
}

// Main runs a package's tests with a database server, stops it afterwards
// and fails the run if goroutines leaked. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	var srv *localpg.Server
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		adminURL = u
	} else {
		dir, err := os.MkdirTemp("", "pointsd-pg-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }() // best effort: a temporary folder
		srv, err = localpg.Start(ctx, localpg.Config{Dir: dir, Settings: map[string]string{
			// Durability buys nothing for a throwaway server.
			"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
			"max_connections": "300",
		}})
		if err != nil {
			skipWhy = err.Error()
		} else {
			adminURL = srv.URL
		}
	}
	if adminURL == "" && os.Getenv("POINTSD_REQUIRE_DB") == "1" {
		fmt.Fprintln(os.Stderr, "pgtest: POINTSD_REQUIRE_DB=1 but no database:", skipWhy)
		return 1
	}
	code := m.Run()
	dropTemplates(ctx)
	if srv != nil {
		if err := srv.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop server:", err)
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// Options shape a test database.
type Options struct {
	// Partitions of users; 0 means a small default (4) that keeps tests fast.
	Partitions int
	// Users seeded (1..n); 0 seeds none.
	Users int64
	// Empty skips migrations: the database has no schema at all.
	Empty bool
}

// NewDB creates a fresh database for t, dropped when t ends, and returns
// its URL. It skips t when there is no server.
func NewDB(t testing.TB, opts Options) string {
	t.Helper()
	if adminURL == "" {
		t.Skip("no PostgreSQL for tests: " + skipWhy)
	}
	ctx := context.Background()
	name := prefix + fmt.Sprint(counter.Add(1))
	tpl := "template0"
	if !opts.Empty {
		var err error
		if tpl, err = templateFor(ctx, max(opts.Partitions, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tpl)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u := dbURL(name)
	if opts.Users > 0 {
		pool := Pool(t, u)
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

func templateFor(ctx context.Context, partitions int) (string, error) {
	if partitions == 0 {
		partitions = 4
	}
	v, _ := templates.LoadOrStore(partitions, &template{})
	tp := v.(*template)
	tp.once.Do(func() {
		tp.name = fmt.Sprintf("%stemplate_%d", prefix, partitions)
		if tp.err = admin(ctx, "CREATE DATABASE "+ident(tp.name)); tp.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		pool, err := pgxpool.New(ctx, dbURL(tp.name))
		if err != nil {
			tp.err = err
			return
		}
		defer pool.Close()
		tp.err = pgsql.Migrate(ctx, pool, partitions, nil)
	})
	return tp.name, tp.err
}

func dropTemplates(ctx context.Context) {
	templates.Range(func(_, v any) bool {
		if tp := v.(*template); tp.name != "" {
			_ = admin(ctx, "DROP DATABASE IF EXISTS "+ident(tp.name)+" WITH (FORCE)")
		}
		return true
	})
}

func admin(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }() // the statement's error is what matters
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("pgtest: %s: %w", strings.Fields(stmt)[0], err)
	}
	return nil
}

// dbURL is adminURL pointing at database name; adminURL may be a URL or a
// key=value string.
func dbURL(name string) string {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return adminURL + " dbname=" + name // the last keyword wins
	}
	u.Path = "/" + name
	return u.String()
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// OffDraw counts users whose points are not their bucket's draw
// (pointsd_bucket_draw): pointsd's invariant at every moment, mid-cycle
// included. It also fails t if a bucket's
// partition is gone.
func OffDraw(t testing.TB, db pgsql.DBTX) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), `
		SELECT count(*) FROM users u JOIN buckets b ON b.partition = u.tableoid
		WHERE u.points <> pointsd_bucket_draw(u.id, b.cycle, b.seed)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Users returns the number of users and the highest id.
func Users(t testing.TB, db pgsql.DBTX) (count, maxID int64) {
	t.Helper()
	if err := db.QueryRow(context.Background(),
		`SELECT count(*), coalesce(max(id), 0) FROM users`).Scan(&count, &maxID); err != nil {
		t.Fatal(err)
	}
	return count, maxID
}

// ServerDir returns a folder for a server of a test's own, removed when t
// ends. Not t.TempDir: its parent is private to root, and the server runs
// as the postgres user when the tests run as root.
func ServerDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pointsd-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // best effort: a temporary folder
	return dir
}

// StartServer starts (or restarts) a PostgreSQL server of t's own in dir
// from the local binaries, on port (0: any), stopped when t ends: for tests
// that stop and start the database. It skips t without the binaries, or
// fails it under POINTSD_REQUIRE_DB=1.
func StartServer(t testing.TB, dir string, port int) *localpg.Server {
	t.Helper()
	ctx := context.Background()
	srv, err := localpg.Start(ctx, localpg.Config{Dir: dir, Port: port, Settings: map[string]string{"fsync": "off"}})
	if err != nil {
		if os.Getenv("POINTSD_REQUIRE_DB") == "1" {
			t.Fatal("start a server: " + err.Error())
		}
		t.Skip("needs the local PostgreSQL binaries: " + err.Error())
	}
	t.Cleanup(func() { _ = srv.Stop(ctx) })
	return srv
}
