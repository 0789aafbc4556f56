-- +goose Up

-- buckets.seed is the seed of the cycle that last rewrote the bucket, set in
-- the same transaction as the rewrite. With it every user's points are
-- predictable at any moment, mid-cycle included: points =
-- pointsd_draw(id, seed) for a bucket rewritten at least once (cycle > 0),
-- 0 before. That is the invariant fault tests check, and what an operator
-- can check by hand after an incident.
ALTER TABLE buckets ADD COLUMN seed bigint NOT NULL DEFAULT 0;
UPDATE buckets b SET seed = s.seed FROM cycle_state s WHERE b.cycle = s.cycle AND b.cycle > 0;

-- +goose Down
ALTER TABLE buckets DROP COLUMN seed;
