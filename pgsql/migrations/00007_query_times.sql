-- +goose Up

-- query_times is how the replicas share the time of the previous query
-- (GET /'s timestamp) without a round trip per request: each replica keeps
-- its latest query time in memory and upserts it here at most every 100 ms
-- while it is queried, NOTIFYing the others in the same statement (see
-- httpapi/querytime.go). max(at) is the cluster's latest query, read when
-- a replica starts or its listener reconnects, so it survives restarts.
--
-- One row per replica instance, not one row for the cluster: no two
-- replicas ever write the same row, so a publish never waits for another
-- replica's row lock (a single row updated with GREATEST would queue every
-- replica's publish behind the one in flight, and behind a replica paused
-- mid-transaction). Readers take no lock. The table lives apart from
-- cycle_state, which a strict cycle keeps locked for its whole transaction,
-- and on Citus it is a plain table on the coordinator, like cycle_state.
--
-- published_at (the database's clock) lets a replica prune the rows of
-- instances gone for a day, never the row holding max(at).
CREATE TABLE query_times (
    instance     text        PRIMARY KEY,
    at           timestamptz NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE query_times;
