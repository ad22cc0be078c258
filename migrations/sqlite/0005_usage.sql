-- Usage records (issue 18): one row per allocation, rewritten by its
-- interim snapshots (end_reason NULL, end_ms = the snapshot's time) and
-- once more when it ends. Times are Unix milliseconds.
-- User, realm, node and REST label are names from the wire or an admin and
-- are stored as bytes, as in 0001 (NUL included; PostgreSQL's TEXT cannot
-- hold NUL, and bytes sort the same in both databases). They are indexed
-- directly, not by a hash: a STUN USERNAME is under 513 bytes and a REALM
-- under 128 characters, well inside an index entry.
CREATE TABLE usage_records (
    id                TEXT PRIMARY KEY,
    node              BLOB NOT NULL,
    username          BLOB NOT NULL,
    realm             BLOB NOT NULL,
    credential        TEXT NOT NULL,
    label             BLOB,
    client            TEXT NOT NULL,
    transport         TEXT NOT NULL,
    relayed           TEXT NOT NULL,
    start_ms          BIGINT NOT NULL,
    end_ms            BIGINT NOT NULL,
    end_reason        TEXT,
    bytes_to_peer     BIGINT NOT NULL,
    packets_to_peer   BIGINT NOT NULL,
    bytes_to_client   BIGINT NOT NULL,
    packets_to_client BIGINT NOT NULL,
    peers             BIGINT NOT NULL
);

-- Queries select by start time (and page in start_ms, id order); the
-- filters by user, realm or node each come with the time window.
CREATE INDEX usage_records_start ON usage_records (start_ms, id);
CREATE INDEX usage_records_user ON usage_records (username, start_ms);
CREATE INDEX usage_records_realm ON usage_records (realm, start_ms);
CREATE INDEX usage_records_node ON usage_records (node, start_ms);
