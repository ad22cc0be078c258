//! The webhook outbox (issue 18): events wait here, one row per (event,
//! receiver URL), until the receiver acknowledges them or they are older
//! than `webhook_max_age`.
//!
//! Delivery is head-of-line per URL: only a URL's oldest row (by event
//! time, then id) is ever tried, so a receiver sees events in time order
//! where possible and a dead receiver is tried once per backoff step, not
//! once per event. Any node of a fleet may deliver any row: it takes the
//! head with a lease, a conditional UPDATE that only one claimer's
//! `rows_affected` can win, and a crashed node's lease simply runs out.

// Until the usage pipeline calls this (issue 18, wired by the server
// side), only tests do: remove this allow with the wiring.

use sqlx::Row;

use super::{Store, StoreError};
use crate::usage::OutboxEvent;

/// The outbox's bound in rows (events × URLs), for [`Store::outbox_add`]:
/// at a few hundred bytes a row, tens of megabytes, and a day of events
/// for a busy node with one receiver down.
pub(crate) const OUTBOX_MAX_ROWS: i64 = 100_000;

/// One event on its way to one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    pub(crate) event_id: String,
    pub(crate) url: String,
    /// The event type (`Turnpike-Event-Type`).
    pub(crate) kind: String,
    /// The JSON body, the same bytes at every attempt.
    pub(crate) body: String,
    pub(crate) time_ms: i64,
    /// Failed attempts so far.
    pub(crate) attempts: i64,
}

/// What a URL's head is, as [`Store::outbox_claim`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// Nothing waits for this URL.
    Empty,
    /// The head is this node's to send until its lease ends.
    Claimed(OutboxRow),
    /// The head is backing off, or leased by another claimer, until
    /// `until_ms` (or another claimer just won it).
    Wait { until_ms: i64 },
}

impl Store {
    /// Writes `events` for every URL in `urls`, in one transaction. A row
    /// already there (same event id and URL) is left as it is, so a batch
    /// written twice is written once. Returns how many rows were not
    /// written because the outbox already held `max_rows` (the newest are
    /// refused: the oldest keep their place in line). With several nodes
    /// writing at once the bound may be passed by one batch each.
    pub(crate) async fn outbox_add(
        &self,
        events: &[OutboxEvent],
        urls: &[String],
        max_rows: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if events.is_empty() || urls.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write().await?;
        let held: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhook_outbox")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let mut room = max_rows - held;
        let mut refused = 0u64;
        for e in events {
            for url in urls {
                if room <= 0 {
                    // A row written by an earlier try of this batch is
                    // not lost.
                    let there = sqlx::query(
                        "SELECT 1 AS one FROM webhook_outbox WHERE event_id = $1 AND url = $2",
                    )
                    .bind(&e.id)
                    .bind(url)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if there.is_none() {
                        refused += 1;
                    }
                    continue;
                }
                let added = sqlx::query(
                    "INSERT INTO webhook_outbox (event_id, url, kind, body, time_ms, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id, url) DO NOTHING",
                )
                .bind(&e.id)
                .bind(url)
                .bind(&e.kind)
                .bind(&e.body)
                .bind(e.time_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                room -= added as i64;
            }
        }
        tx.commit().await?;
        Ok(refused)
    }

    /// Looks at `url`'s head and, if it is due and not leased, leases it
    /// to `node` until `now_ms + lease_ms`.
    pub(crate) async fn outbox_claim(
        &self,
        url: &str,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Head, StoreError> {
        // A read first: the usual answer is "nothing" or "backing off",
        // and on SQLite a read takes no write lock.
        let Some(r) = sqlx::query(
            "SELECT event_id, kind, body, time_ms, attempts, next_at_ms, leased_until_ms \
             FROM webhook_outbox WHERE url = $1 ORDER BY time_ms, event_id LIMIT 1",
        )
        .bind(url)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(Head::Empty);
        };
        let next_at: i64 = r.try_get("next_at_ms")?;
        let leased_until: i64 = r.try_get("leased_until_ms")?;
        if next_at > now_ms || leased_until > now_ms {
            return Ok(Head::Wait {
                until_ms: next_at.max(leased_until),
            });
        }
        let row = OutboxRow {
            event_id: r.try_get("event_id")?,
            url: url.to_string(),
            kind: r.try_get("kind")?,
            body: r.try_get("body")?,
            time_ms: r.try_get("time_ms")?,
            attempts: r.try_get("attempts")?,
        };
        let won = sqlx::query(
            "UPDATE webhook_outbox SET leased_until_ms = $1, leased_by = $2 \
             WHERE event_id = $3 AND url = $4 AND leased_until_ms <= $5 AND next_at_ms <= $6",
        )
        .bind(now_ms + lease_ms)
        .bind(node)
        .bind(&row.event_id)
        .bind(url)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if won == 1 {
            Head::Claimed(row)
        } else {
            Head::Wait { until_ms: now_ms }
        })
    }

    /// The receiver acknowledged the row: it is deleted. False if it was
    /// gone already (expired, or another node's late ack).
    pub(crate) async fn outbox_ack(&self, event_id: &str, url: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM webhook_outbox WHERE event_id = $1 AND url = $2")
            .bind(event_id)
            .bind(url)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// An attempt by `node` failed: one more attempt counted, the lease
    /// released, the next try not before `next_at_ms`. False if `node` no
    /// longer held the row (its lease ran out and another node took it, or
    /// it expired): the other node's outcome counts.
    pub(crate) async fn outbox_fail(
        &self,
        event_id: &str,
        url: &str,
        node: &str,
        next_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_at_ms = $1, \
             leased_until_ms = 0, leased_by = '' \
             WHERE event_id = $2 AND url = $3 AND leased_by = $4",
        )
        .bind(next_at_ms)
        .bind(event_id)
        .bind(url)
        .bind(node)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Ends every lease `node` holds: called when it starts, since a lease
    /// under its name is from a previous life that crashed (node names are
    /// unique in a fleet), and its rows need not wait for the lease to run
    /// out. Returns how many.
    pub(crate) async fn outbox_release(&self, node: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE webhook_outbox SET leased_until_ms = 0, leased_by = '' WHERE leased_by = $1",
        )
        .bind(node)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Deletes every row whose event happened before `before_ms` (any URL,
    /// configured or not); returns how many.
    pub(crate) async fn outbox_expire(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM webhook_outbox WHERE time_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Rows waiting, for every URL.
    pub(crate) async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhook_outbox")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n.max(0) as u64)
    }

    /// `url`'s rows in delivery order: (event id, attempts).
    #[cfg(test)]
    pub(crate) async fn outbox_rows(&self, url: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, attempts FROM webhook_outbox WHERE url = $1 \
             ORDER BY time_ms, event_id",
        )
        .bind(url)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("event_id")?, r.try_get("attempts")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
pub(crate) mod tests;
