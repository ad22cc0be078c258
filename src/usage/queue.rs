//! The bounded queue between the workers (which push what their cores
//! report) and the writer (which takes batches for the store). Pushing
//! never blocks or waits on the store: beyond [`HARD_LIMIT`] an item is
//! lost, counted, and logged once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{OutboxEvent, UsageRecord, UsageStats};

/// Items the writer keeps in memory while the store is unreachable; past
/// this it moves the oldest to the spill file.
pub const MEMORY_LIMIT: usize = 10_000;
/// Items the queue holds at most, whatever the writer is doing (it may be
/// stuck on a slow disk): past this, items are lost.
pub const HARD_LIMIT: usize = 100_000;

/// One thing for the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum Item {
    /// A usage record (final or interim).
    #[serde(rename = "r")]
    Record(Box<UsageRecord>),
    /// An event for the webhook outbox.
    #[serde(rename = "e")]
    Event(OutboxEvent),
}

#[derive(Debug)]
pub struct Queue {
    items: Mutex<VecDeque<Item>>,
    /// Wakes the writer.
    pub wake: Notify,
    stats: Arc<UsageStats>,
    /// Set once the first loss has been logged.
    loss_logged: AtomicBool,
}

impl Queue {
    pub fn new(stats: Arc<UsageStats>) -> Self {
        Queue {
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            stats,
            loss_logged: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Item>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` for the writer; false (and counted) if the queue is full.
    pub fn push(&self, item: Item) -> bool {
        let mut q = self.lock();
        if q.len() >= HARD_LIMIT {
            drop(q);
            self.lost(1);
            return false;
        }
        q.push_back(item);
        self.stats.queued.store(q.len() as u64, Ordering::Relaxed);
        drop(q);
        self.wake.notify_one();
        true
    }

    /// Counts `n` items lost; the first loss is logged (once per process:
    /// a loss means the store and the spill file were both out of reach).
    pub fn lost(&self, n: u64) {
        UsageStats::add(&self.stats.lost, n);
        if !self.loss_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                event = "usage_lost",
                "usage records or events lost: the store is unreachable and the spill file is full or unwritable (turnpike_usage_lost_total counts them)"
            );
        }
    }

    /// Up to `n` items from the front.
    pub fn take(&self, n: usize) -> Vec<Item> {
        let mut q = self.lock();
        let n = n.min(q.len());
        let out = q.drain(..n).collect();
        self.stats.queued.store(q.len() as u64, Ordering::Relaxed);
        out
    }

    /// Puts items taken with [`Queue::take`] back in front, in order (their
    /// write failed).
    pub fn put_back(&self, items: Vec<Item>) {
        let mut q = self.lock();
        for item in items.into_iter().rev() {
            q.push_front(item);
        }
        self.stats.queued.store(q.len() as u64, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> Item {
        Item::Event(OutboxEvent::new(
            format!("{i:032x}"),
            "node.ready",
            "n",
            0,
            serde_json::json!({}),
        ))
    }

    #[test]
    fn a_full_queue_counts_what_it_loses_and_keeps_order() {
        let stats = Arc::new(UsageStats::default());
        let q = Queue::new(stats.clone());
        for i in 0..HARD_LIMIT + 3 {
            q.push(event(i));
        }
        assert_eq!(q.len(), HARD_LIMIT);
        assert_eq!(UsageStats::get(&stats.lost), 3);
        let first = q.take(2);
        assert_eq!(first, [event(0), event(1)]);
        q.put_back(first);
        assert_eq!(q.take(1), [event(0)]);
        assert_eq!(UsageStats::get(&stats.queued), HARD_LIMIT as u64 - 1);
    }
}
