-- +goose Up

-- leader_lease proves, on the database's clock, that the leader is alive.
-- The leader lock (a session advisory lock) is released only when its
-- session ends, and a paused process or a cut-off host keeps its session
-- open for minutes. So the leader renews this row every leader poll, and a
-- follower that finds it stale while the lock is still held ends the
-- holder's sessions and leads (see updater/leader.go).
--
-- term numbers leaderships: a new leader raises it, and every write a
-- leader makes checks it still holds its term. A leader that was evicted
-- and wakes up changes nothing.
--
-- holder is the instance that holds the term ('' before any did): its
-- sessions are named pointsd-leader/<holder> and pointsd-updater/<holder>.
-- The row lives apart from cycle_state, which a strict cycle keeps locked
-- for its whole transaction.
CREATE TABLE leader_lease (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    term       bigint      NOT NULL DEFAULT 0,
    holder     text        NOT NULL DEFAULT '',
    renewed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO leader_lease DEFAULT VALUES;

-- +goose Down
DROP TABLE leader_lease;
