-- The webhook outbox (issue 18): one row per (event, receiver URL), written
-- before delivery so an event survives restarts and receiver outages. Any
-- node delivers any row: per URL the oldest row (time_ms, event_id) is the
-- only one tried, under a lease (leased_until_ms, leased_by) taken by a
-- conditional UPDATE, so two nodes never send one row at once and a
-- crashed node's lease simply runs out. A delivered row is deleted; a
-- failed one waits until next_at_ms. Times are Unix milliseconds.
CREATE TABLE webhook_outbox (
    event_id        TEXT NOT NULL,
    url             TEXT NOT NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    time_ms         BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_at_ms      BIGINT NOT NULL DEFAULT 0,
    leased_until_ms BIGINT NOT NULL DEFAULT 0,
    leased_by       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (event_id, url)
);

-- Each URL's head, in delivery order.
CREATE INDEX webhook_outbox_order ON webhook_outbox (url, time_ms, event_id);
-- Expiry after webhook_max_age, across URLs (also those no longer configured).
CREATE INDEX webhook_outbox_time ON webhook_outbox (time_ms);
