//! Delivery from the outbox: one task per receiver URL takes its head row
//! ([`Store::outbox_claim`]), POSTs it, and acknowledges (deletes) it on a
//! 2xx or backs the URL off on anything else; one housekeeping task drops
//! rows older than `webhook_max_age` and refreshes the depth gauge.
//!
//! Only the store and HTTP are touched, never the workers, and only one
//! row per URL is in memory at a time, however long a receiver is down.

// Until the usage pipeline calls this (issue 18, wired by the server
// side), only tests do: remove this allow with the wiring.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::sign::signature;
use crate::auth::rest::Secret;
use crate::store::outbox::{Head, OutboxRow};
use crate::store::{redact, unix_now_ms, Store, StoreError};
use crate::usage::UsageStats;

/// One attempt, connection and response included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting (TCP and TLS) within the attempt.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A claimed row is this node's for this long: an attempt (10 s) and its
/// acknowledgement fit inside with room for a slow store; after it another
/// node may take the row (this one crashed).
pub(crate) const LEASE: Duration = Duration::from_secs(60);
/// Each URL looks at its head at least this often without a poke; expiry
/// and the depth gauge run at this period too.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// At most this much of a response body is read (then the connection is
/// dropped rather than reused): a receiver cannot make us buffer more.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Retry delays: after the n-th failure the next attempt waits a random
/// time in `[0, min(cap, base * 2^(n-1))]` ("full jitter", so receivers
/// coming back are not hit by every node at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Backoff {
    /// 1 s, doubling, capped at 5 minutes.
    pub(crate) const DEFAULT: Backoff = Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(300),
    };

    /// The wait after `failures` (at least 1) failed attempts.
    pub(crate) fn delay(&self, failures: i64) -> Duration {
        let doublings = failures.clamp(1, 64) as u32 - 1;
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        Duration::from_millis(fastrand::u64(0..=ceiling.as_millis() as u64))
    }
}

/// Wakes the delivery tasks at once (after new outbox rows were written)
/// instead of at their next poll. Cheap to clone; a poke while a task is
/// busy is kept for when it next waits.
#[derive(Debug, Clone)]
pub(crate) struct Poke(Arc<[Notify]>);

impl Poke {
    pub(crate) fn poke(&self) {
        for n in self.0.iter() {
            n.notify_one();
        }
    }
}

/// Why the delivery service could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

/// The webhook delivery service of one node.
pub(crate) struct Webhooks {
    store: Store,
    urls: Vec<String>,
    secret: Secret,
    max_age: Duration,
    node: String,
    stats: Arc<UsageStats>,
    backoff: Backoff,
    poll: Duration,
    client: reqwest::Client,
    poke: Poke,
}

// By hand: the secret stays out of logs.
impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("node", &self.node)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    /// Why not, for the log: `HTTP 500`, `timed out`, `cannot connect: ...`.
    Failed(String),
}

impl Webhooks {
    /// Delivery of the outbox rows of `urls` (the config's `webhook_url`),
    /// signed with `secret`, dropping events older than `max_age`; `node`
    /// names this node's leases.
    pub(crate) fn new(
        store: Store,
        urls: Vec<String>,
        secret: Secret,
        max_age: Duration,
        node: String,
        stats: Arc<UsageStats>,
    ) -> Result<Webhooks, WebhookError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("turnpike/", env!("CARGO_PKG_VERSION")))
            // A redirect is a failure like any non-2xx: the signed body
            // goes only where the operator said.
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY and ALL_PROXY are not read: an environment
            // variable set for something else must not route signed
            // events elsewhere (README, "Webhooks").
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let poke = Poke(urls.iter().map(|_| Notify::new()).collect());
        Ok(Webhooks {
            store,
            urls,
            secret,
            max_age,
            node,
            stats,
            backoff: Backoff::DEFAULT,
            poll: POLL,
            client,
            poke,
        })
    }

    /// Other retry delays (tests).
    #[cfg(test)]
    pub(crate) fn with_backoff(mut self, backoff: Backoff) -> Webhooks {
        self.backoff = backoff;
        self
    }

    /// Another poll period (tests: a long one shows pokes work).
    #[cfg(test)]
    pub(crate) fn with_poll(mut self, poll: Duration) -> Webhooks {
        self.poll = poll;
        self
    }

    /// The handle that wakes delivery; take it before [`Webhooks::run`].
    pub(crate) fn poker(&self) -> Poke {
        self.poke.clone()
    }

    /// Delivers until `stop` turns true (or its sender is dropped). An
    /// attempt in flight then finishes (within [`REQUEST_TIMEOUT`]) and its
    /// outcome is written before this returns, so an acknowledged event is
    /// not sent again after a restart.
    pub(crate) async fn run(self, stop: watch::Receiver<bool>) {
        // Leases of this node's previous life (it crashed mid-attempt):
        // its rows go now rather than when the leases run out. A store
        // that is down here only means waiting for them.
        if let Err(e) = self.store.outbox_release(&self.node).await {
            store_error("release old leases", &e);
        }
        let this = Arc::new(self);
        let mut tasks = JoinSet::new();
        for i in 0..this.urls.len() {
            tasks.spawn(this.clone().deliver(i, stop.clone()));
        }
        tasks.spawn(this.clone().housekeep(stop));
        while tasks.join_next().await.is_some() {}
    }

    /// URL `i`'s task: head-of-line delivery.
    async fn deliver(self: Arc<Self>, i: usize, mut stop: watch::Receiver<bool>) {
        let url = &self.urls[i];
        let lease_ms = LEASE.as_millis() as i64;
        // A delivered row whose delete failed (the store was away): retried
        // before anything else, so the lease does not run out and send it
        // again.
        let mut unacked: Option<String> = None;
        loop {
            let stopping = stopped(&stop);
            if let Some(id) = &unacked {
                match self.store.outbox_ack(id, url).await {
                    Ok(_) => unacked = None,
                    Err(e) => store_error("acknowledge", &e),
                }
            }
            if stopping {
                return;
            }
            let now = unix_now_ms();
            let wait = if unacked.is_some() {
                self.poll
            } else {
                match self
                    .store
                    .outbox_claim(url, &self.node, now, lease_ms)
                    .await
                {
                    Ok(Head::Claimed(row)) => {
                        if let Some(id) = self.attempt(row, now).await {
                            unacked = Some(id);
                        }
                        continue;
                    }
                    Ok(Head::Empty) => self.poll,
                    Ok(Head::Wait { until_ms }) => {
                        Duration::from_millis((until_ms - now).clamp(5, i64::MAX) as u64)
                            .min(self.poll)
                    }
                    Err(e) => {
                        store_error("claim", &e);
                        self.poll
                    }
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = self.poke.0[i].notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends a claimed row and writes the outcome; returns the id of a
    /// delivered row whose acknowledgement could not be written.
    async fn attempt(&self, row: OutboxRow, now_ms: i64) -> Option<String> {
        if row.time_ms < now_ms - self.max_age.as_millis() as i64 {
            // Past its age between two housekeeping passes: dropped unsent.
            if let Ok(true) = self.store.outbox_ack(&row.event_id, &row.url).await {
                UsageStats::add(&self.stats.webhook_dropped, 1);
            }
            return None;
        }
        match self.send(&row).await {
            Outcome::Delivered => {
                UsageStats::add(&self.stats.webhook_delivered, 1);
                if row.attempts > 0 {
                    tracing::info!(
                        url = %redact(&row.url),
                        attempts = row.attempts + 1,
                        "webhook receiver accepted an event again"
                    );
                }
                match self.store.outbox_ack(&row.event_id, &row.url).await {
                    Ok(_) => None,
                    Err(e) => {
                        store_error("acknowledge", &e);
                        Some(row.event_id)
                    }
                }
            }
            Outcome::Failed(why) => {
                UsageStats::add(&self.stats.webhook_failed, 1);
                let failures = row.attempts + 1;
                let delay = self.backoff.delay(failures);
                // One line per failed attempt, and attempts are one per
                // backoff step per URL (head-of-line), never one per event.
                tracing::warn!(
                    url = %redact(&row.url),
                    attempts = failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "webhook delivery failed: {why}"
                );
                let next_at = unix_now_ms() + delay.as_millis() as i64;
                if let Err(e) = self
                    .store
                    .outbox_fail(&row.event_id, &row.url, &self.node, next_at)
                    .await
                {
                    // The lease runs out and the row is tried again then.
                    store_error("record a failure", &e);
                }
                None
            }
        }
    }

    /// One POST, signed now.
    async fn send(&self, row: &OutboxRow) -> Outcome {
        let t = unix_now_ms().div_euclid(1000);
        let sent = self
            .client
            .post(&row.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "Turnpike-Signature",
                signature(&self.secret.0, t, &row.body),
            )
            .header("Turnpike-Event-Id", &row.event_id)
            .header("Turnpike-Event-Type", &row.kind)
            .body(row.body.clone())
            .send()
            .await;
        match sent {
            Ok(mut response) => {
                let status = response.status();
                // Read a little of the body so the connection can be
                // reused; a large one is cut off with the connection.
                let mut read = 0;
                while read < MAX_RESPONSE_BODY {
                    match response.chunk().await {
                        Ok(Some(c)) => read += c.len(),
                        _ => break,
                    }
                }
                if status.is_success() {
                    Outcome::Delivered
                } else {
                    Outcome::Failed(format!("HTTP {}", status.as_u16()))
                }
            }
            Err(e) => Outcome::Failed(describe(&e)),
        }
    }

    /// Drops rows past `max_age` (counted) and refreshes the depth gauge.
    async fn housekeep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !stopped(&stop) {
            let now = unix_now_ms();
            match self
                .store
                .outbox_expire(now - self.max_age.as_millis() as i64)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    UsageStats::add(&self.stats.webhook_dropped, n);
                    tracing::warn!(
                        "{n} webhook deliveries dropped: older than webhook_max_age ({} s)",
                        self.max_age.as_secs()
                    );
                }
                Err(e) => store_error("expire", &e),
            }
            match self.store.outbox_depth().await {
                Ok(n) => self
                    .stats
                    .outbox_depth
                    .store(n, std::sync::atomic::Ordering::Relaxed),
                Err(e) => store_error("count", &e),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

/// Whether to stop: asked to, or nobody can ask any more.
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// The store may be down: rows stay where they are and the next pass
/// tries again, so this is not worth more than a debug line.
fn store_error(what: &str, e: &StoreError) {
    tracing::debug!("webhook outbox: cannot {what}: {e}");
}

/// A failed request in a few words, without its URL (which may hold a
/// token; the log line names it redacted).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The innermost cause is the telling one (connection refused, a
    // certificate problem).
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(next) = cause.and_then(|c| c.source()) {
        cause = Some(next);
    }
    match cause {
        Some(c) => format!("{what}: {c}"),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_its_base_with_full_jitter_up_to_its_cap() {
        let b = Backoff::DEFAULT;
        for (failures, ceiling_ms) in [(1, 1_000), (2, 2_000), (3, 4_000), (9, 256_000)] {
            let delays: Vec<u64> = (0..200)
                .map(|_| b.delay(failures).as_millis() as u64)
                .collect();
            assert!(delays.iter().all(|&d| d <= ceiling_ms), "{failures}");
            // Spread over the range, not stuck at either end.
            assert!(delays.iter().any(|&d| d < ceiling_ms / 2), "{failures}");
            assert!(delays.iter().any(|&d| d > ceiling_ms / 2), "{failures}");
        }
        for failures in [10, 40, 64, 1_000, i64::MAX] {
            let d = b.delay(failures);
            assert!(d <= Duration::from_secs(300), "{failures}: {d:?}");
        }
        assert!((0..200).any(|_| b.delay(50) > Duration::from_secs(150)));
        // Zero or negative counts are treated as the first failure.
        assert!(b.delay(0) <= Duration::from_secs(1));
    }
}
