package citustest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pointsd/pointsd"
	"github.com/pointsd/pointsd/internal/citustest"
	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
	"github.com/pointsd/pointsd/updater"
)

func TestMain(m *testing.M) { citustest.Main(m) }

// Migrate on a Citus coordinator distributes users (and every partition,
// colocated) by id over the workers, distributes pointsd_draw and
// pointsd_bucket_draw, and keeps the state on the coordinator, where the
// leader lock and notifications live.
func TestMigrateDistributesUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{Partitions: 4})
	pool := pgtest.Pool(t, url)

	var tables, colocations, shards, workersWithShards int
	var drawDistributed, stateLocal bool
	err := pool.QueryRow(ctx, `
		SELECT count(*), count(DISTINCT colocationid),
		       (SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'users_p0'::regclass),
		       (SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'users_p0'::regclass),
		       EXISTS (SELECT FROM pg_dist_object WHERE objid = 'pointsd_draw(bigint,bigint)'::regprocedure)
		       AND EXISTS (SELECT FROM pg_dist_object WHERE objid = 'pointsd_bucket_draw(bigint,bigint,bigint)'::regprocedure),
		       NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid IN ('buckets'::regclass, 'cycle_state'::regclass))
		FROM pg_dist_partition WHERE logicalrelid::text LIKE 'users%' AND partmethod = 'h'`).
		Scan(&tables, &colocations, &shards, &workersWithShards, &drawDistributed, &stateLocal)
	if err != nil {
		t.Fatal(err)
	}
	if tables != 5 || colocations != 1 {
		t.Errorf("%d users tables hash-distributed in %d colocation groups, want users and its 4 partitions in 1", tables, colocations)
	}
	if shards != pgsql.CitusShards || workersWithShards != citustest.Workers {
		t.Errorf("a partition has %d shards on %d workers, want %d on %d", shards, workersWithShards, pgsql.CitusShards, citustest.Workers)
	}
	if !drawDistributed {
		t.Error("pointsd_draw or pointsd_bucket_draw is not a distributed function: the workers could not run the draws")
	}
	if !stateLocal {
		t.Error("buckets or cycle_state is distributed; they belong on the coordinator")
	}

	// New sessions send a worker's shard commands over one connection.
	var poolSize string
	if err := pgtest.Pool(t, url).QueryRow(ctx, `SHOW citus.max_adaptive_executor_pool_size`).Scan(&poolSize); err != nil {
		t.Fatal(err)
	}
	if poolSize != "1" {
		t.Errorf("citus.max_adaptive_executor_pool_size is %s in new sessions, want 1", poolSize)
	}

	// Again: nothing to do, no error.
	if err := pgsql.Migrate(ctx, pool, 0, nil); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}

// Two replicas migrating a fresh Citus database at once both succeed, and
// the schema is distributed once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{NoMigrate: true})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		pool := pgtest.Pool(t, url)
		wg.Go(func() { errs[i] = pgsql.Migrate(ctx, pool, 4, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	pool := pgtest.Pool(t, url)
	c, err := pgsql.CitusInfo(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Distributed || c.Workers != citustest.Workers {
		t.Errorf("after two migrates: %+v, want users distributed over %d workers", c, citustest.Workers)
	}
	var shards int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'users'::regclass`).Scan(&shards); err != nil {
		t.Fatal(err)
	}
	if shards != pgsql.CitusShards {
		t.Errorf("users has %d shards, want %d", shards, pgsql.CitusShards)
	}
}

// A coordinator with the extension and no worker is refused with one line
// that says what to do, before anything is created.
func TestMigrateRefusesHalfSetUpCitus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, citustest.NewDB(t, citustest.Options{NoMigrate: true, NoWorkers: true}))
	err := pgsql.Migrate(ctx, pool, 4, nil)
	if !errors.Is(err, pgsql.ErrCitusHalfSetUp) || !strings.Contains(err.Error(), "citus_add_node") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("migrate: %v, want one line naming citus_add_node", err)
	}
	var users bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('users') IS NOT NULL`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	if users {
		t.Error("the refused migrate created users")
	}
}

// A database migrated and seeded on one PostgreSQL, which then becomes a
// Citus coordinator: migrate distributes the existing users, all of them,
// with their points, and cycles go on.
func TestMigrateDistributesExistingUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{NoMigrate: true})
	pool := pgtest.Pool(t, url)
	// Plain first: no citus extension in this database.
	if _, err := pool.Exec(ctx, `DROP EXTENSION citus`); err != nil {
		t.Fatal(err)
	}
	if err := pgsql.Migrate(ctx, pool, 4, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pgsql.Seed(ctx, pool, 5000, 2, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := pgsql.CitusInfo(ctx, pool); err != nil || c.Installed {
		t.Fatalf("plain PostgreSQL seen as %+v (%v)", c, err)
	}
	if _, err := pool.Exec(ctx, `UPDATE users SET points = 7 WHERE id = 42`); err != nil {
		t.Fatal(err)
	}
	// Then Citus.
	pool.Reset()
	if _, err := pool.Exec(ctx, `CREATE EXTENSION citus`); err != nil {
		t.Fatal(err)
	}
	if err := citustest.RegisterNodes(ctx, url); err != nil {
		t.Fatal(err)
	}
	if err := pgsql.Migrate(ctx, pool, 0, nil); err != nil {
		t.Fatal(err)
	}
	var n int64
	var points int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT points FROM users WHERE id = 42`).Scan(&points); err != nil {
		t.Fatal(err)
	}
	if n != 5000 || points != 7 {
		t.Errorf("after distributing: %d users, user 42 has %d points; want 5000 and 7", n, points)
	}
	if c, err := pgsql.CitusInfo(ctx, pool); err != nil || !c.Distributed {
		t.Errorf("users not distributed: %+v (%v)", c, err)
	}
	// The coordinator's own copies, invisible once distributed, are gone.
	var local int64
	if err := pool.QueryRow(ctx, `SELECT sum(pg_relation_size(partition)) FROM buckets`).Scan(&local); err != nil {
		t.Fatal(err)
	}
	if local != 0 {
		t.Errorf("the coordinator keeps %d bytes of users partitions", local)
	}
	u, _, _ := newUpdater(t, url, updater.Config{Mode: pointsd.Rolling})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	if off := citustest.OffDraw(t, pool); off != 0 {
		t.Errorf("%d users off their bucket's draw after a cycle", off)
	}
}

// A partition dropped by hand on Citus is reported by the damage check
// and recreated, distributed like the others, by migrate; seed refills it.
func TestRepairDroppedPartition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{Partitions: 4, Users: 4000})
	pool := pgtest.Pool(t, url)
	if _, err := pool.Exec(ctx, `DROP TABLE users_p1`); err != nil {
		t.Fatal(err)
	}
	problems, err := pgsql.CheckState(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Check != pgsql.CheckPartitions {
		t.Fatalf("after dropping a partition: %+v", problems)
	}
	if err := pgsql.Migrate(ctx, pool, 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pgsql.Repair(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pgsql.Seed(ctx, pool, 4000, 2, nil); err != nil {
		t.Fatal(err)
	}
	var shards int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'users_p1'::regclass`).Scan(&shards); err != nil {
		t.Fatal(err)
	}
	if shards != pgsql.CitusShards {
		t.Errorf("the recreated partition has %d shards, want %d", shards, pgsql.CitusShards)
	}
	if p, err := pgsql.CheckState(ctx, pool); err != nil || len(p) != 0 {
		t.Errorf("after repair: %+v (%v)", p, err)
	}
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 4000 {
		t.Errorf("%d users after repair and seed, want 4000", n)
	}
	u, _, _ := newUpdater(t, url, updater.Config{Mode: pointsd.Rolling})
	if _, err := u.RunCycle(ctx); err != nil {
		t.Fatal(err)
	}
	if off := citustest.OffDraw(t, pool); off != 0 {
		t.Errorf("%d users off their bucket's draw", off)
	}
}

// A registered worker whose database lost the citus extension is named,
// and migrate refuses until it has it again.
func TestMigrateRefusesWorkerWithoutExtension(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := citustest.NewDB(t, citustest.Options{NoMigrate: true})
	if err := citustest.ExecOnWorker(ctx, 1, url, `DROP EXTENSION citus CASCADE`); err != nil {
		t.Fatal(err)
	}
	err := pgsql.Migrate(ctx, pgtest.Pool(t, url), 4, nil)
	port := citustest.WorkerPort(1)
	if !errors.Is(err, pgsql.ErrCitusHalfSetUp) || !strings.Contains(err.Error(), fmt.Sprintf(":%d has no citus extension", port)) {
		t.Fatalf("migrate: %v, want worker :%d named", err, port)
	}
}
