-- +goose Up

-- cluster_mode is the mode the whole cluster runs in, set by `pointsd mode`
-- or an explicit `serve -mode`; the leader reads it at every boundary and
-- runs the next cycle in it (mode stays the mode of the current cycle). It
-- lives here, not in a flag, so that every replica agrees whoever leads.
ALTER TABLE cycle_state
    ADD COLUMN cluster_mode text NOT NULL DEFAULT 'rolling' CHECK (cluster_mode IN ('rolling', 'strict'));
UPDATE cycle_state SET cluster_mode = mode;

-- next_start is the earliest time the next cycle may start, published by
-- the leader with every cycle and as soon as it leads, and never moved
-- earlier: until then the floor cannot change, so replicas reuse answers
-- from the first request (see httpapi/cache.go). Null while no leader keeps
-- a schedule.
ALTER TABLE cycle_state ADD COLUMN next_start timestamptz;
-- A paced cycle published before this column promised its period.
UPDATE cycle_state SET next_start = started_at + period_ms * interval '1 millisecond'
WHERE period_ms IS NOT NULL;

-- +goose Down
ALTER TABLE cycle_state DROP COLUMN next_start, DROP COLUMN cluster_mode;
