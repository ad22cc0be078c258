-- Revoked names (issue 19): a REST username, a long-term user or an OAuth
-- kid that every node refuses, and whose allocations end, until the row
-- goes. A REST revocation ends when its credential would have
-- (expires_at, Unix seconds); the others have none and stay until
-- removed. Expired rows are pruned by the next revocation and are never
-- loaded. Live rows are capped per realm and in total (store/revocations.rs).
CREATE TABLE revocations (
    rkey        TEXT PRIMARY KEY,
    realm_key   TEXT NOT NULL,
    realm       BLOB NOT NULL,
    name        BLOB NOT NULL,
    kind        TEXT NOT NULL,
    created     BIGINT NOT NULL,
    expires_at  BIGINT
);

-- The per-realm count and the snapshot's load.
CREATE INDEX revocations_realm ON revocations (realm_key);
-- Pruning.
CREATE INDEX revocations_expiry ON revocations (expires_at);
