-- Fleet quotas (issue 15): one row per allocation of every node, so that
-- user_quota, realm quotas and total_quota count the whole fleet. A row
-- counts only while its node's heartbeat (nodes.last_seen) is fresh, so a
-- crashed node's rows stop counting with its heartbeat; each node rewrites
-- its own rows from its live allocations every heartbeat. Users and realms
-- are keyed by the store's row key (a hash), never by their names. The
-- id is unique on its node only.
CREATE TABLE fleet_allocations (
    node      TEXT NOT NULL,
    id        BIGINT NOT NULL,
    realm_key TEXT NOT NULL,
    user_key  TEXT NOT NULL,
    created   BIGINT NOT NULL,
    PRIMARY KEY (node, id)
);
CREATE INDEX fleet_allocations_user ON fleet_allocations (user_key);
