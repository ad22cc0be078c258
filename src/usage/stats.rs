//! Counters of usage accounting and webhook delivery for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Plain atomics: bumped by the writer, the delivery tasks and the
/// workers, read by `/metrics`.
#[derive(Debug, Default)]
pub struct UsageStats {
    /// Usage records written to the store (final and interim).
    pub records_written: AtomicU64,
    /// Records and events lost because memory and the spill file were full.
    pub lost: AtomicU64,
    /// Records and events waiting in memory now (gauge).
    pub queued: AtomicU64,
    /// Records and events written to the spill file.
    pub spilled: AtomicU64,
    /// Webhook deliveries acknowledged with a 2xx.
    pub webhook_delivered: AtomicU64,
    /// Webhook attempts that failed (error, timeout, non-2xx).
    pub webhook_failed: AtomicU64,
    /// Webhooks dropped after `webhook_max_age`, or because the outbox
    /// was full.
    pub webhook_dropped: AtomicU64,
    /// Rows in the outbox at the last look (gauge).
    pub outbox_depth: AtomicU64,
    /// `allocation.refused` events not sent because of sampling.
    pub refusals_sampled_out: AtomicU64,
}

impl UsageStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
