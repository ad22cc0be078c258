-- turnpike credential store, SQLite.
-- Names (users, realms, key ids) are stored as bytes so that anything an
-- admin types round-trips verbatim (NUL included); each table is keyed by a
-- SHA-256 of its names, because indexes cannot hold 10 KB values.

CREATE TABLE users (
    ukey        TEXT PRIMARY KEY,
    realm       BLOB NOT NULL,
    name        BLOB NOT NULL,
    ha1_md5     TEXT NOT NULL,
    ha1_sha256  TEXT,
    created     BIGINT NOT NULL
);

CREATE TABLE secrets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    realm       BLOB NOT NULL,
    value       BLOB NOT NULL,
    created     BIGINT NOT NULL
);

CREATE TABLE oauth_keys (
    kkey        TEXT PRIMARY KEY,
    kid         BLOB NOT NULL,
    key_b64     TEXT NOT NULL,
    alg         TEXT NOT NULL,
    lifetime    BIGINT NOT NULL DEFAULT 0,
    created     BIGINT NOT NULL
);

CREATE TABLE user_quotas (
    ukey        TEXT PRIMARY KEY,
    realm       BLOB NOT NULL,
    name        BLOB NOT NULL,
    allocations BIGINT,
    bps         BIGINT
);

CREATE TABLE realm_quotas (
    rkey        TEXT PRIMARY KEY,
    realm       BLOB NOT NULL,
    allocations BIGINT,
    bps         BIGINT
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      BLOB NOT NULL
);

CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);

-- Bumped by every change; running servers poll it and reload on change.
CREATE TABLE revision (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    n           BIGINT NOT NULL
);
INSERT INTO revision (id, n) VALUES (1, 0);
