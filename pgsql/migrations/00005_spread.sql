-- +goose Up

-- spread_ms is the part of the period a rolling cycle's slots are spread
-- over (see partition.Schedule): the leader leaves the rest of the period
-- for the last buckets' own work, learned from the cycle before, so that a
-- healthy cycle ends before the next boundary whatever the number of users.
-- Replicas read it to know each bucket's slot. Null: the whole period.
ALTER TABLE cycle_state ADD COLUMN spread_ms bigint CHECK (spread_ms > 0);

-- last_bucket_max is the slowest bucket transaction of the last finished
-- rolling cycle, in seconds: what the next leader, whoever it is, sizes the
-- spread by.
ALTER TABLE cycle_state ADD COLUMN last_bucket_max double precision;

-- +goose Down
ALTER TABLE cycle_state DROP COLUMN last_bucket_max, DROP COLUMN spread_ms;
