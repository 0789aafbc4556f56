package pgsql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

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
	// NodeConnInfo and RecoverInterval are the coordinator's
	// citus.node_conninfo and citus.recover_2pc_interval (see Warnings).
	NodeConnInfo, RecoverInterval string
}

// Warnings name the coordinator's settings that let a worker cut off
// without a reset stop the cycles for long (measured in docs/CITUS.md): a
// node_conninfo without tcp_user_timeout leaves a bucket's commit, and
// every bucket after it behind its locks, waiting on the lost worker until
// TCP gives up (about 15 minutes); a recover_2pc_interval over 10 s (or
// off) leaves what that commit prepared on the worker locked as long.
func (c Citus) Warnings() []string {
	if !c.Installed || c.Workers == 0 {
		return nil
	}
	var out []string
	if !strings.Contains(c.NodeConnInfo, "tcp_user_timeout") {
		out = append(out, fmt.Sprintf("citus.node_conninfo (%q) sets no tcp_user_timeout: a worker cut off without a reset mid two-phase commit "+
			"holds a bucket's commit, and every later bucket, until TCP gives up (about 15 min); "+
			"add tcp_user_timeout=10000 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 to it on the coordinator and every worker, and reload", c.NodeConnInfo))
	}
	if every, err := time.ParseDuration(strings.Replace(c.RecoverInterval, "min", "m", 1)); err != nil || every < 0 || every > 10*time.Second {
		out = append(out, fmt.Sprintf("citus.recover_2pc_interval is %s: a two-phase commit a lost worker kept prepared holds its bucket's rows that long once it is back; set it to 1s-10s",
			c.RecoverInterval))
	}
	return out
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
	if err := db.QueryRow(ctx, `SELECT current_setting('citus.node_conninfo'), current_setting('citus.recover_2pc_interval')`).
		Scan(&c.NodeConnInfo, &c.RecoverInterval); err != nil {
		return c, fmt.Errorf("read citus settings: %w", err)
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
	if log != nil {
		for _, w := range c.Warnings() {
			log.Warn("citus setting", slog.String("problem", w))
		}
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

// workerConnectTimeout bounds each connection the Citus checks open to a
// worker (citus.node_connection_timeout, 30 s by default): a worker cut off
// without a reset is named unreachable within it, instead of holding the
// whole check until its caller gives up and says only "database
// unavailable".
const workerConnectTimeout = time.Second

// preparedAfter is the age past which a two-phase commit still prepared on
// a worker is named: Citus commits or rolls one back within milliseconds,
// unless the coordinator lost the worker between PREPARE and COMMIT
// PREPARED; then the prepared transaction keeps its rows locked (the
// bucket's next rewrite waits on them) until Citus's recovery runs, every
// citus.recover_2pc_interval (a minute by default).
const preparedAfter = 10 * time.Second

// citusProblems checks, on Citus, each worker: that the coordinator can
// reach it and it is active (users' shards have no replicas, so queries
// and cycles fail until it is back), which is damage; and that it holds no
// two-phase commit prepared over preparedAfter ago, which is an old
// snapshot: answers stay true (the Citus reader checks each user against
// its bucket's draw), but the bucket's rewrite waits. One question to
// every worker answers both: run_command_on_workers opens a connection of
// its own to each, so the connection timeout set for this transaction
// applies (citus_check_connection_to_node would reuse the session's cached
// one, which a worker gone silent holds forever).
func citusProblems(ctx context.Context, pool *pgxpool.Pool) ([]Problem, error) {
	var out []Problem
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('citus.node_connection_timeout', $1, true)`,
			strconv.FormatInt(workerConnectTimeout.Milliseconds(), 10)); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, citusProblemsSQL, CheckCitusWorkers, CheckOldSnapshot, int(preparedAfter.Seconds()))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Problem])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("check citus workers: %w", err)
	}
	return out, nil
}

// citusProblemsSQL is citusProblems' question: a row (check, detail) per
// worker that is inactive, unreachable, or holds two-phase commits
// prepared over $3 seconds ago. Each worker answers with the count of
// those, the oldest's age in seconds and its name (gid, last: it may hold
// spaces).
const citusProblemsSQL = `
SELECT CASE WHEN NOT n.isactive OR NOT coalesce(r.success, false) THEN $1 ELSE $2 END,
       CASE WHEN NOT n.isactive THEN
                 format('citus worker %s:%s is inactive: its shards cannot be read or written; bring it back and SELECT citus_activate_node(%L, %s), or move its shards off before citus_remove_node',
                        n.nodename, n.nodeport, n.nodename, n.nodeport)
            WHEN NOT coalesce(r.success, false) THEN
                 format('citus worker %s:%s is unreachable from the coordinator: queries and cycles fail until it is back', n.nodename, n.nodeport)
            ELSE format('citus worker %s:%s has %s two-phase commit(s) prepared over %s s ago and not finished (the oldest, %L, %s s ago): '
                        'they keep their rows locked, so their buckets'' next rewrite waits, until Citus recovers its own (%s) '
                        'or someone finishes the others (COMMIT PREPARED or ROLLBACK PREPARED on the worker); '
                        'SELECT recover_prepared_transactions() on the coordinator recovers Citus''s at once',
                        n.nodename, n.nodeport, split_part(r.result, ' ', 1), $3::int, regexp_replace(r.result, '^\S+ \S+ ', ''), split_part(r.result, ' ', 2),
                        CASE WHEN s.every LIKE '-%' THEN 'never: citus.recover_2pc_interval is -1; set it to 1s-10s'
                             WHEN s.every::interval > interval '10 seconds' THEN format('citus.recover_2pc_interval is %s: set it to 1s-10s', s.every)
                             ELSE 'every ' || s.every END)
       END
FROM pg_dist_node n
LEFT JOIN run_command_on_workers(format(
       $$SELECT count(*) || ' ' || coalesce(floor(extract(epoch FROM now() - min(prepared)))::text, '') || ' ' || coalesce((array_agg(gid ORDER BY prepared))[1], '')
         FROM pg_prepared_xacts WHERE database = current_database() AND prepared < now() - interval '%s seconds'$$, $3::int)) r
       ON r.nodename = n.nodename AND r.nodeport = n.nodeport
CROSS JOIN (SELECT current_setting('citus.recover_2pc_interval') AS every) s
WHERE n.groupid <> 0 AND n.noderole = 'primary'
  AND (NOT n.isactive OR NOT coalesce(r.success, false) OR split_part(r.result, ' ', 1) <> '0')
ORDER BY n.nodeid`
