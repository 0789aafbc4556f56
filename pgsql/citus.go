package pgsql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Citus, the distributed PostgreSQL (an extension running in its own
// servers: a coordinator pointsd talks to and workers holding the shards),
// changes only where the users live. On a database with the citus
// extension, Migrate hash-distributes users by id: each partition (bucket)
// is cut into CitusShards shards spread over the workers, colocated, so a
// user's row is on one worker. buckets and cycle_state stay plain tables on
// the coordinator: a bucket's claim and its rewrite are still one
// (two-phase) transaction, the leader lock and LISTEN/NOTIFY still live on
// the coordinator, and a claim touches one node, not every node as a
// reference table's would (measured in docs/CITUS.md: bucket p50 8 ms
// local against 13 ms reference at 100k users).
//
// Without the extension nothing here runs: plain PostgreSQL is unchanged.

// CitusShards is the shard count of users and of each partition on Citus.
// Eight shards per bucket lets up to eight workers share every bucket's
// rewrite (and citus_rebalance_start move them); more would add a remote
// round trip per shard to every bucket transaction for nothing on the
// clusters this was measured on.
const CitusShards = 8

// ErrCitusHalfSetUp is wrapped by Migrate when the citus extension is
// there but the cluster is not usable yet.
var ErrCitusHalfSetUp = errors.New("citus is half set up")

// Citus says how the database is distributed.
type Citus struct {
	Installed   bool // the citus extension exists in this database
	Workers     int  // active primary worker nodes
	Inactive    int  // registered workers that are not active
	Distributed bool // users is a distributed table
	// Unusable lists the active workers that cannot serve this database:
	// unreachable, or without the citus extension in it.
	Unusable []string
}

// CitusInfo reads the cluster's Citus state. On plain PostgreSQL it is
// one cheap catalog query, and Installed is false.
func CitusInfo(ctx context.Context, db DBTX) (Citus, error) {
	var c Citus
	if err := db.QueryRow(ctx,
		`SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')`).Scan(&c.Installed); err != nil {
		return c, fmt.Errorf("detect citus: %w", err)
	}
	if !c.Installed {
		return c, nil
	}
	// groupid 0 is the coordinator (when citus_set_coordinator_host
	// registered it); every other primary is a worker.
	err := db.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE isactive)::int, count(*) FILTER (WHERE NOT isactive)::int,
		       EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = to_regclass('users'))
		FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'`).Scan(&c.Workers, &c.Inactive, &c.Distributed)
	if err != nil {
		return c, fmt.Errorf("read citus nodes: %w", err)
	}
	if c.Workers == 0 {
		return c, nil
	}
	// Citus refuses to register a worker without the extension, but it
	// can be dropped there later, or the worker be down.
	rows, err := db.Query(ctx, `
		SELECT CASE WHEN success THEN format('%s:%s has no citus extension in this database: CREATE EXTENSION citus there', nodename, nodeport)
		            ELSE format('%s:%s is unreachable: %s', nodename, nodeport, replace(result, E'\n', ' ')) END
		FROM run_command_on_workers($$SELECT count(*) FROM pg_extension WHERE extname = 'citus'$$)
		WHERE NOT success OR result <> '1'
		ORDER BY nodename, nodeport`)
	if err != nil {
		return c, fmt.Errorf("check citus workers: %w", err)
	}
	if c.Unusable, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return c, fmt.Errorf("check citus workers: %w", err)
	}
	return c, nil
}

// Problem says why a database with the citus extension cannot be used as a
// Citus cluster, "" when it can (or has no citus at all).
func (c Citus) Problem() string {
	switch {
	case !c.Installed:
		return ""
	case c.Inactive > 0 && !c.Distributed:
		return fmt.Sprintf("%d citus workers are registered but inactive: SELECT citus_activate_node(host, port) on the coordinator, or citus_remove_node them", c.Inactive)
	case c.Workers == 0:
		return "the citus extension is installed but no worker is registered: SELECT citus_add_node(host, port) for each worker on the coordinator, or DROP EXTENSION citus to run on this server alone"
	case len(c.Unusable) > 0 && !c.Distributed:
		// Once users is distributed, a worker down or inactive is the
		// damage check's to report (/readyz), not a reason for serve not
		// to start: replicas restarted meanwhile must still come up.
		return "citus worker " + strings.Join(c.Unusable, "; worker ")
	}
	return ""
}

// distributedFunctions are the functions that queries on users run on the
// workers, which must have them. pointsd_bucket_draw calls pointsd_draw,
// so pointsd_draw comes first.
var distributedFunctions = []string{"pointsd_draw(bigint,bigint)", "pointsd_bucket_draw(bigint,bigint,bigint)"}

// distributeCitus makes users a distributed table and distributedFunctions
// distributed functions, if the database has the citus extension. It runs
// under the migration lock, after the schema is migrated. It distributes
// only what is not distributed yet, so migrate stays idempotent and safe when replicas
// run it at once. The ALTER DATABASE runs on every migrate: it sets the
// same value each time.
func distributeCitus(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	c, err := CitusInfo(ctx, pool)
	if err != nil || !c.Installed {
		return err
	}
	if p := c.Problem(); p != "" {
		return fmt.Errorf("%w: %s", ErrCitusHalfSetUp, p)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("citus: %w", err)
	}
	defer conn.Release()
	// A session lock, not a transaction's: create_distributed_table copies
	// rows and commits on the workers in its own way.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLockID)); err != nil {
		return fmt.Errorf("citus: take the migration lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(migrateLockID)) }()

	var usersDone bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'users'::regclass)`).
		Scan(&usersDone); err != nil {
		return fmt.Errorf("citus: %w", err)
	}
	for _, fn := range distributedFunctions {
		var done bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_dist_object
			WHERE classid = 'pg_proc'::regclass AND objid = $1::text::regprocedure)`, fn).Scan(&done); err != nil {
			return fmt.Errorf("citus: %w", err)
		}
		if done {
			continue
		}
		if _, err := conn.Exec(ctx, `SELECT create_distributed_function($1::text::regprocedure)`, fn); err != nil {
			return fmt.Errorf("citus: distribute %s: %w", fn, err)
		}
	}
	// One connection per worker for each session's shard commands, over
	// the connection the session keeps: the executor's default opens more
	// to run a worker's shards in parallel, and a bucket's few shards then
	// pay for new connections in every transaction (measured: bucket p50
	// 41 ms against 13 ms at 30k users, strict 207 ms against 68 ms; see
	// docs/CITUS.md). Set on the database, so every replica's sessions
	// get it from their next connection on.
	var dbname string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&dbname); err != nil {
		return fmt.Errorf("citus: %w", err)
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{dbname}.Sanitize()+
		` SET citus.max_adaptive_executor_pool_size = 1`); err != nil {
		return fmt.Errorf("citus: set citus.max_adaptive_executor_pool_size: %w", err)
	}
	if !usersDone {
		if _, err := conn.Exec(ctx, `SELECT create_distributed_table('users', 'id', shard_count := $1)`, CitusShards); err != nil {
			return fmt.Errorf("citus: distribute users: %w", err)
		}
		// Rows that existed are copied to the workers; the coordinator's
		// copies are invisible from now on and only take space.
		if _, err := conn.Exec(ctx, `SELECT truncate_local_data_after_distributing_table('users')`); err != nil {
			return fmt.Errorf("citus: drop the coordinator's copy of users: %w", err)
		}
		if log != nil {
			log.Info("users distributed over the citus workers", slog.Int("workers", c.Workers), slog.Int("shards_per_bucket", CitusShards))
		}
	}
	return nil
}

// citusWorkerProblems returns a line per worker the coordinator cannot
// reach, or that is registered inactive: users' shards have no replicas,
// so queries and cycles fail until it is back. Only called on Citus.
func citusWorkerProblems(ctx context.Context, db DBTX) ([]string, error) {
	rows, err := db.Query(ctx, `
		SELECT CASE WHEN isactive
		       THEN format('citus worker %s:%s is unreachable from the coordinator: queries and cycles fail until it is back', nodename, nodeport)
		       ELSE format('citus worker %s:%s is inactive: its shards cannot be read or written; bring it back and SELECT citus_activate_node(%L, %s), or move its shards off before citus_remove_node', nodename, nodeport, nodename, nodeport)
		       END
		FROM pg_dist_node
		WHERE groupid <> 0 AND noderole = 'primary'
		  AND (NOT isactive OR NOT citus_check_connection_to_node(nodename, nodeport))
		ORDER BY nodeid`)
	if err != nil {
		return nil, fmt.Errorf("check citus workers: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
