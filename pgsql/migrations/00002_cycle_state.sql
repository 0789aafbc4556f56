-- +goose Up

-- cycle_state is the one row every replica reads the qualifying floor from,
-- written only by the leader. A floor is drawn here, at creation, so queries
-- have one from the start and never wait for the first cycle boundary.
CREATE TABLE cycle_state (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    cycle       bigint      NOT NULL DEFAULT 0,
    floor       smallint    NOT NULL CHECK (floor BETWEEN 0 AND 100),
    seed        bigint      NOT NULL DEFAULT 0,
    mode        text        NOT NULL DEFAULT 'rolling' CHECK (mode IN ('rolling', 'strict')),
    -- started_at is the cycle's wall-clock boundary; finished_at is null
    -- while it runs. last_duration is the last finished cycle's, in seconds.
    -- period_ms is the leader's period for paced cycles (null otherwise):
    -- replicas rely on the schedule it implies to know how long an answer
    -- stays true (see httpapi/cache.go).
    period_ms     bigint CHECK (period_ms > 0),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    last_duration double precision
);
INSERT INTO cycle_state (floor) VALUES (floor(random() * 101));

-- pointsd_draw is a user's points for a cycle's seed: uniform over 0..100
-- inclusive (2^63 is not a multiple of 101, but the bias is below 1e-16),
-- reproducible, so tests can predict every value, and IMMUTABLE, so it is
-- inlined, runs in parallel plans, and is accepted by distributed PostgreSQL
-- (Citus rejects VOLATILE functions such as random() in such updates).
CREATE FUNCTION pointsd_draw(id bigint, seed bigint) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((hashint8extended(id, seed) & 9223372036854775807) % 101)::smallint;

-- +goose Down
DROP FUNCTION pointsd_draw(bigint, bigint);
DROP TABLE cycle_state;
