-- One admin view of a fleet's sessions (issue 15). Each node replaces its
-- row every heartbeat (2 s) with the JSON list of its sessions as the admin
-- API shows them; readers skip rows older than 10 s (the node is down).
CREATE TABLE fleet_sessions (
    node     TEXT PRIMARY KEY,
    sessions TEXT NOT NULL,
    updated  BIGINT NOT NULL
);

-- "End this session" for another node: the owner takes its rows (on a
-- NOTIFY with PostgreSQL, by polling every second either way), ends each
-- session and deletes the row. Rows older than a minute are dropped.
CREATE TABLE fleet_session_commands (
    node    TEXT NOT NULL,
    session TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (node, session)
);
