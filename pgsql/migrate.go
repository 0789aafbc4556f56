package pgsql

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pointsd/pointsd/partition"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

const (
	// DefaultPartitions is the number of users partitions (rolling buckets)
	// a new schema gets: one per second of a one-minute period.
	DefaultPartitions = 60
	// MaxPartitions bounds -partitions: past it, per-partition overhead
	// (planning, catalog, one transaction each) outweighs spreading the load.
	MaxPartitions = 1024

	// fillfactor leaves room on every page for a new version of each of its
	// rows, so a full update is entirely HOT (heap-only: no index entry is
	// written, and the next update prunes the old versions within the page)
	// and the table does not grow from cycle to cycle. A row is about 60
	// bytes with its line pointer; 45 was measured to keep every update HOT.
	fillfactor = 45

	// migrationsTable records applied versions (goose's bookkeeping).
	migrationsTable = "pointsd_migrations"
	// migrateLockID is the advisory lock two replicas migrating at once
	// serialize on.
	migrateLockID = 7_310_449_110_001
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// usersMigration is version 1, run by the Go migration createUsers rather
// than by goose: the partition count is a parameter.
const usersMigration = "00001_users.sql"

//go:embed migrations/00001_users.sql
var usersSQL string

// ErrPartitions is wrapped by Migrate when the users table exists with a
// different number of partitions than asked for.
var ErrPartitions = errors.New("partitions mismatch")

// Migrate creates or upgrades the schema under an advisory lock, so replicas
// starting together apply each migration once. partitions is the number of
// users partitions: 0 means DefaultPartitions for a new table and whatever an
// existing table has; any other value must match an existing table, since the
// count is fixed when the table is created.
func Migrate(ctx context.Context, pool *pgxpool.Pool, partitions int, log *slog.Logger) error {
	if partitions < 0 || partitions > MaxPartitions {
		return fmt.Errorf("partitions must be between 1 and %d (or 0 for the existing count), got %d", MaxPartitions, partitions)
	}
	want := partitions
	if want == 0 {
		want = DefaultPartitions
	}
	if err := checkPartitions(ctx, pool, partitions); err != nil {
		return err
	}
	// A half set up Citus is refused before anything is created: tables
	// made now would have to be distributed by hand later.
	if c, err := CitusInfo(ctx, pool); err != nil {
		return err
	} else if p := c.Problem(); p != "" {
		return fmt.Errorf("%w: %s", ErrCitusHalfSetUp, p)
	}
	p, err := newProvider(pool, want, log)
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }() // closes the database/sql handle over the pool, not the pool
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// Checked again: another replica may have created the table meanwhile.
	if err := checkPartitions(ctx, pool, partitions); err != nil {
		return err
	}
	return distributeCitus(ctx, pool, log)
}

// SchemaVersion returns the applied and the latest known schema versions.
func SchemaVersion(ctx context.Context, db DBTX) (current, latest int64, err error) {
	latest, err = latestVersion()
	if err != nil {
		return 0, 0, err
	}
	var exists bool
	if err = db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, migrationsTable).Scan(&exists); err != nil || !exists {
		return 0, latest, wrapErr("read schema version", err) // no table: nothing applied
	}
	err = db.QueryRow(ctx,
		`SELECT coalesce(max(version_id), 0) FROM `+migrationsTable+` WHERE is_applied`).Scan(&current)
	if err != nil {
		return 0, latest, fmt.Errorf("read schema version: %w", err)
	}
	return current, latest, nil
}

// Partitions returns the number of partitions of the users table, 0 when
// there is no such table yet.
func Partitions(ctx context.Context, db DBTX) (int, error) {
	var n int
	err := db.QueryRow(ctx, `
		SELECT count(*) FROM pg_inherits
		WHERE inhparent = to_regclass('users')`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count partitions: %w", err)
	}
	return n, nil
}

func checkPartitions(ctx context.Context, db DBTX, want int) error {
	if want == 0 {
		return nil
	}
	have, err := Partitions(ctx, db)
	if err != nil || have == 0 || have == want {
		return err
	}
	return fmt.Errorf("%w: users has %d partitions, -partitions asks for %d; "+
		"the count is fixed when the table is created: to change it, recreate the database "+
		"and run migrate -partitions %d, then seed", ErrPartitions, have, want, want)
}

func newProvider(pool *pgxpool.Pool, partitions int, log *slog.Logger) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrateLockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		// Version 1's file is the Go migration's to run, not goose's.
		goose.WithExcludeNames([]string{usersMigration}),
		goose.WithTableName(migrationsTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(goose.NewGoMigration(1,
			&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
				return createUsers(ctx, tx, partitions)
			}}, nil)),
	}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	} else {
		opts = append(opts, goose.WithLogger(goose.NopLogger()))
	}
	return goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), sub, opts...)
}

// latestVersion is the newest migration this binary knows: the highest of
// the embedded files' versions and the Go migration's. Read once: /readyz
// asks on every probe.
var latestVersion = sync.OnceValues(func() (int64, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return 0, err
	}
	latest := int64(1)
	for _, name := range names {
		v, err := goose.NumericComponent(name)
		if err != nil {
			return 0, err
		}
		latest = max(latest, v)
	}
	return latest, nil
})

// createUsers is migration 1: the users table, its partitions and the
// buckets table mapping the two. It is Go rather than SQL only because the
// partition count is a parameter.
func createUsers(ctx context.Context, tx *sql.Tx, partitions int) error {
	if _, err := tx.ExecContext(ctx, usersSQL); err != nil {
		return err
	}
	for i := range partitions {
		name := partition.Name(i, partitions)
		ddl := partitionDDL(pgx.Identifier{name}, partitions, i)
		if _, err := tx.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("create partition %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO buckets (bucket, partition) VALUES ($1, $2::regclass)`,
			i, pgx.Identifier{name}.Sanitize()); err != nil {
			return err
		}
	}
	return nil
}

// attachDDL attaches table name as partition i of n of users.
func attachDDL(name pgx.Identifier, n, i int) string {
	return fmt.Sprintf(`ALTER TABLE users ATTACH PARTITION %s FOR VALUES WITH (MODULUS %d, REMAINDER %d)`,
		name.Sanitize(), n, i)
}

// partitionDDL creates partition i of n of users, named name. The numbers
// come from validated ints and the name is quoted: nothing here is
// formatted from input.
func partitionDDL(name pgx.Identifier, n, i int) string {
	return fmt.Sprintf(`CREATE TABLE %s PARTITION OF users
		FOR VALUES WITH (MODULUS %d, REMAINDER %d)
		WITH (fillfactor = %d, autovacuum_vacuum_cost_delay = 0)`,
		name.Sanitize(), n, i, fillfactor)
}

// wrapErr wraps err with what, or returns nil for a nil err.
func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
