-- The fleet's node registry (issue 15): one row per node, written by its
-- heartbeat every 2 s. A node whose last_seen is over 10 s old is shown as
-- down. Node names are checked ([A-Za-z0-9._-], at most 64) before they get
-- here, so they can key the table directly.
CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    region      TEXT NOT NULL,
    state       TEXT NOT NULL,
    urls        TEXT NOT NULL,
    allocations BIGINT NOT NULL,
    relayed_bps BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
