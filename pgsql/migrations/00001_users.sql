-- Version 1: users and buckets. Unlike the others, this file is not read by
-- goose: migrate.go's Go migration 1 runs it and then creates the users
-- partitions and their buckets, because their number is a parameter
-- (migrate -partitions). It is kept here so that this folder lists every
-- version of the schema.
--
-- users holds the points being re-drawn. It is natively hash-partitioned on
-- id: each partition is one bucket of the rolling updater, rewritten in its
-- own transaction, so a cycle's write load is spread across the period and
-- no transaction ever holds more than 1/N of the table.
--
-- There is deliberately no index on points. An index on an updated column
-- makes every update non-HOT (a new index entry per row, per cycle), which
-- triples the time of a full update and bloats the table. The query does not
-- need one: points are uniform, so a sequential scan meets two rows above the
-- floor within a few hundred rows, and the CHECK lets the planner prove that
-- "points > 100" matches nothing without scanning at all.
CREATE TABLE users (
    id          bigint      NOT NULL,
    points      smallint    NOT NULL DEFAULT 0
                CONSTRAINT users_points_range CHECK (points BETWEEN 0 AND 100),
    inserted_at timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
) PARTITION BY HASH (id);

-- buckets maps each bucket of the rolling updater to its partition and
-- records the last cycle that rewrote it, in the same transaction as the
-- rewrite: a leader taking over mid-cycle knows which buckets are left.
CREATE TABLE buckets (
    bucket     integer     PRIMARY KEY CHECK (bucket >= 0),
    partition  regclass    NOT NULL UNIQUE,
    cycle      bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz
);
