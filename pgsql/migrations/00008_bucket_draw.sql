-- +goose Up

-- pointsd_bucket_draw is the points a user must hold at every moment,
-- mid-cycle included: 0 while its bucket was never rewritten (cycle 0),
-- else the draw of the seed its bucket last recorded (see migration 3).
-- It is pointsd's invariant, "every user holds its bucket's draw", named
-- once: the Citus reader, the tests and the chaos tool all call it.
--
-- It is not STRICT, so the planner can inline it (a STRICT body must be
-- provably null on a null argument). A null cycle or seed still gives null:
-- pointsd_draw is STRICT. On Citus, migrate distributes it like
-- pointsd_draw, since queries on users run it on the workers.
CREATE FUNCTION pointsd_bucket_draw(id bigint, cycle bigint, seed bigint) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN cycle = 0 THEN 0 ELSE pointsd_draw(id, seed) END;

-- +goose Down
DROP FUNCTION pointsd_bucket_draw(bigint, bigint, bigint);
