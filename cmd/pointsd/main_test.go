package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// runPointsd runs the command line as main would and returns the exit status
// and what was printed.
func runPointsd(t *testing.T, ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{}, env, "missing command"},
		{[]string{"frobnicate"}, env, `unknown command "frobnicate"`},
		{[]string{"migrate", "-partitions", "0"}, env, "-partitions must be between 1 and"},
		{[]string{"migrate", "-nope"}, env, "flag provided but not defined: -nope"},
		{[]string{"seed", "-users", "-5"}, env, "-users must be between 1 and 1000000000"},
		{[]string{"seed", "-users", "10000000000"}, env, "-users must be between 1 and 1000000000"},
		{[]string{"size"}, env, "pointsd size: -users must be at least 1"},
		{[]string{"size", "-users", "5", "-period", "1ms"}, env, "-period must be at least 100ms"},
		{[]string{"seed", "extra"}, env, `unexpected argument "extra"`},
		{[]string{"seed"}, map[string]string{"POINTSD_USERS": "many"}, "POINTSD_USERS (flag -users)"},
		{[]string{"seed"}, map[string]string{}, "DATABASE_URL is not set"},
		{[]string{"serve", "-addr", "nowhere"}, env, "invalid -addr"},
		{[]string{"serve", "-mode", "bogus"}, env, `invalid value "bogus" for flag -mode: must be rolling or strict`},
		{[]string{"serve"}, map[string]string{"POINTSD_MODE": "fast"}, "POINTSD_MODE (flag -mode): must be rolling or strict"},
		{[]string{"serve", "-period", "10ms"}, env, "-period must be at least 100ms"},
		{[]string{"serve", "-period", "soon"}, env, "flag -period"},
		{[]string{"serve", "-workers", "0"}, env, "-workers must be between 1 and 64"},
		{[]string{"serve", "-slow-cycle", "0s"}, env, "-slow-cycle must be positive"},
		{[]string{"serve", "-query-time", "global"}, env, `-query-time must be cluster or replica, got "global"`},
		{[]string{"cycle", "-mode", "all"}, env, "flag -mode"},
	}
	for _, c := range cases {
		code, _, stderr := runPointsd(t, context.Background(), c.env, c.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if code != 2 || !strings.Contains(last, c.want) {
			t.Errorf("pointsd %v: exit %d, %q; want exit 2 and %q", c.args, code, last, c.want)
		}
	}
}

func TestHelpExits0(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"migrate", "-h"}, {"seed", "-h"}, {"cycle", "-h"}, {"serve", "-h"}} {
		code, stdout, _ := runPointsd(t, context.Background(), nil, args...)
		if code != 0 || !strings.Contains(stdout, "Usage: pointsd") {
			t.Errorf("pointsd %v: exit %d, stdout %q; want usage and exit 0", args, code, stdout)
		}
	}
}

func TestUnreachableDatabaseExits1(t *testing.T) {
	t.Parallel()
	// A port nobody listens on, and one that accepts but never speaks
	// PostgreSQL (the connection times out): each error names the address.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Close() }()
	for _, addr := range []string{"127.0.0.1:1", silent.Addr().String()} {
		env := map[string]string{"DATABASE_URL": "postgres://nobody@" + addr + "/none?connect_timeout=1"}
		code, _, stderr := runPointsd(t, context.Background(), env, "migrate")
		if code != 1 || !strings.HasPrefix(stderr, "pointsd: database unreachable ("+addr) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("exit %d, stderr %q; want exit 1 and one line naming %s", code, stderr, addr)
		}
	}
}

func TestSeedTwiceLeavesExactlyOneMillion(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Empty: true})
	env := map[string]string{"DATABASE_URL": url}
	ctx := context.Background()

	if code, _, stderr := runPointsd(t, ctx, env, "seed"); code != 1 || !strings.Contains(stderr, "run pointsd migrate first") {
		t.Fatalf("seed before migrate: exit %d, %q; want a hint to migrate", code, stderr)
	}
	if code, out, stderr := runPointsd(t, ctx, env, "migrate"); code != 0 || !strings.Contains(out, "60 partitions") {
		t.Fatalf("migrate: exit %d, %q %q", code, out, stderr)
	}
	for i, want := range []string{"(0 existed, 1000000 added)", "(1000000 existed, 0 added)"} {
		code, out, stderr := runPointsd(t, ctx, env, "seed")
		if code != 0 || !strings.Contains(out, "1000000 users "+want) {
			t.Fatalf("seed #%d: exit %d, %q %q; want %q", i+1, code, out, stderr, want)
		}
	}
	var n int64
	if err := pgtest.Pool(t, url).QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil || n != 1_000_000 {
		t.Fatalf("users = %d, %v; want 1000000", n, err)
	}
}

func TestMigrateOtherPartitionCountFails(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": pgtest.NewDB(t, pgtest.Options{Empty: true})}
	ctx := context.Background()
	if code, _, stderr := runPointsd(t, ctx, env, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d, %q", code, stderr)
	}
	code, _, stderr := runPointsd(t, ctx, env, "migrate", "-partitions", "7")
	if code != 1 || !strings.Contains(stderr, "users has 60 partitions, -partitions asks for 7") {
		t.Fatalf("migrate -partitions 7: exit %d, %q; want exit 1 about partitions", code, stderr)
	}
	// The environment counts as asking, and the command line wins over it.
	env["POINTSD_PARTITIONS"] = "7"
	if code, _, _ := runPointsd(t, ctx, env, "migrate"); code != 1 {
		t.Errorf("POINTSD_PARTITIONS=7 migrate: exit %d, want 1", code)
	}
	if code, _, stderr := runPointsd(t, ctx, env, "migrate", "-partitions", "60"); code != 0 {
		t.Errorf("POINTSD_PARTITIONS=7 migrate -partitions 60: exit %d, %q; want 0", code, stderr)
	}
}

func TestSeedUsersFromEnvironment(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{})
	env := map[string]string{"DATABASE_URL": url, "POINTSD_USERS": "1234"}
	if code, out, stderr := runPointsd(t, context.Background(), env, "seed"); code != 0 || !strings.HasPrefix(out, "1234 users") {
		t.Fatalf("POINTSD_USERS=1234 seed: exit %d, %q %q", code, out, stderr)
	}
}

func TestServeLeadsRunsCyclesAndStopsOnCancel(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	url := pgtest.NewDB(t, pgtest.Options{Empty: true})
	env := map[string]string{"DATABASE_URL": url, "POINTSD_PERIOD": "500ms"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		code, _, stderr := runPointsd(t, ctx, env, "serve", "-addr", addr, "-mode", "strict")
		if code != 0 {
			t.Errorf("serve: exit %d, %s", code, stderr)
		}
		close(done)
	}()
	for _, path := range []string{"/healthz", "/readyz"} {
		waitStatus(t, "http://"+addr+path, http.StatusOK)
	}
	// serve migrated the empty database and, leading, runs strict cycles
	// every 500ms (from the environment).
	pool := pgtest.Pool(t, url)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := pgsql.ReadState(context.Background(), pool)
		if err == nil && st.Cycle >= 2 && st.Mode == "strict" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second strict cycle within 10s: %+v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{"pointsd_leader 1", `pointsd_cycle_duration_seconds_count{mode="strict"}`, `pointsd_pool_max_connections{pool="updater"}`, `pointsd_build_info{goversion=`, "pointsd_clock_offset_seconds ", "pointsd_listener_up "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	cancel()
	select {
	case <-done:
	case <-time.After(6 * time.Second):
		t.Fatal("serve did not stop within 6s of cancel")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// waitStatus polls url until it answers want, for at most 15s.
func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET %s: %s, want %d", url, last, want)
}

func TestCycleRunsOneCycleAndPrintsIt(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 5, Users: 3_000})
	env := map[string]string{"DATABASE_URL": url}
	ctx := context.Background()
	for i, mode := range []string{"strict", "rolling"} {
		code, out, stderr := runPointsd(t, ctx, env, "cycle", "-mode", mode)
		want := fmt.Sprintf("cycle %d (%s): 3000 users in 5 buckets in ", i+1, mode)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Fatalf("cycle -mode %s: exit %d, %q %q; want %q", mode, code, out, stderr, want)
		}
	}

	// While a serve leads, a cycle by hand is refused.
	pool := pgtest.Pool(t, url)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// The cycles' sessions release the lock when their server processes
	// exit, which on a loaded machine may be a moment after pointsd did.
	pgtest.Eventually(t, 5*time.Second, "the leader lock was not free", func() bool {
		ok, err := pgsql.TryLeaderLock(ctx, conn)
		if err != nil {
			t.Fatalf("take leader lock: %v", err)
		}
		return ok
	})
	defer func() { _, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`) }()
	if code, _, stderr := runPointsd(t, ctx, env, "cycle"); code != 1 || !strings.Contains(stderr, "a pointsd serve is leading") {
		t.Fatalf("cycle under a leader: exit %d, %q; want exit 1 saying a serve leads", code, stderr)
	}
}

// An error is reported as itself: a role that may not read the schema's
// version is not told to migrate, and one that may not take the leader lock
// is not told that a serve leads.
func TestErrorsAreNotDisguised(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Users: 10})
	pool := pgtest.Pool(t, url)
	role := fmt.Sprintf("limited_%d", time.Now().UnixNano())
	if _, err := pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN;
		REVOKE EXECUTE ON FUNCTION pg_try_advisory_lock(bigint) FROM PUBLIC`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(ctx, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	asRole := strings.Replace(url, "postgres@", role+"@", 1)
	if cfg.User != "postgres" || asRole == url {
		t.Skip("needs a postgres@ URL to swap the role in")
	}
	env := map[string]string{"DATABASE_URL": asRole}
	if code, _, stderr := runPointsd(t, ctx, env, "seed", "-users", "10"); code != 1 ||
		!strings.Contains(stderr, "permission denied") || strings.Contains(stderr, "migrate") {
		t.Errorf("seed without SELECT on the schema: exit %d, %q; want the permission error, not a hint to migrate", code, stderr)
	}
	if _, err := pool.Exec(ctx, `GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runPointsd(t, ctx, env, "cycle"); code != 1 ||
		!strings.Contains(stderr, "permission denied") || strings.Contains(stderr, "leading") {
		t.Errorf("cycle without the lock function: exit %d, %q; want the permission error, not that a serve leads", code, stderr)
	}
}
