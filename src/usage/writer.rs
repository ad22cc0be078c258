//! The writer: takes the queue's items in batches and writes them to the
//! store (records, then outbox rows); while the store fails, keeps up to
//! [`MEMORY_LIMIT`] items in memory and moves the rest to the spill file,
//! which it replays first once the store answers. At the end of the
//! process ([`Writer::finish`]) it writes what is left within a deadline
//! and spills the rest, so a restart loses nothing that was queued.
//!
//! Also here: the interim snapshots and the daily retention prune.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::queue::{Item, Queue, MEMORY_LIMIT};
use super::recorder::Recorder;
use super::spill::Spill;
use super::webhook::Poke;
use super::{OutboxEvent, UsageRecord, UsageStats};
use crate::net::control::Registry;
use crate::store::outbox::OUTBOX_MAX_ROWS;
use crate::store::Store;

/// Items per store transaction.
const BATCH: usize = 500;
/// A write that takes longer counts as failed (the store is unreachable).
const WRITE_WITHIN: Duration = Duration::from_secs(5);
/// How often the writer looks without being woken, and after a failure.
const IDLE: Duration = Duration::from_secs(1);
/// How often old records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) queue: Arc<Queue>,
    pub(crate) store: Store,
    pub(crate) spill: Spill,
    pub(crate) urls: Vec<String>,
    pub(crate) stats: Arc<UsageStats>,
    /// Poked after new outbox rows are written (webhook delivery).
    pub(crate) delivered: Option<Poke>,
}

impl Writer {
    /// Writes `items` in one go: records, then events. Either may be
    /// written twice after a failure; both writes are idempotent.
    async fn write(&self, items: &[Item]) -> Result<(), String> {
        let records: Vec<UsageRecord> = items
            .iter()
            .filter_map(|i| match i {
                Item::Record(r) => Some((**r).clone()),
                Item::Event(_) => None,
            })
            .collect();
        let events: Vec<OutboxEvent> = items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(e.clone()),
                Item::Record(_) => None,
            })
            .collect();
        let work = async {
            if !records.is_empty() {
                self.store.write_usage(&records).await?;
            }
            if !events.is_empty() && !self.urls.is_empty() {
                let now = crate::store::unix_now_ms();
                let dropped = self
                    .store
                    .outbox_add(&events, &self.urls, OUTBOX_MAX_ROWS, now)
                    .await?;
                if dropped > 0 {
                    UsageStats::add(&self.stats.webhook_dropped, dropped);
                    tracing::warn!(
                        "webhook outbox full ({OUTBOX_MAX_ROWS} rows): {dropped} deliveries dropped"
                    );
                }
            }
            Ok::<_, crate::store::StoreError>(())
        };
        match tokio::time::timeout(WRITE_WITHIN, work).await {
            Ok(Ok(())) => {
                UsageStats::add(&self.stats.records_written, records.len() as u64);
                if !events.is_empty() {
                    if let Some(p) = &self.delivered {
                        p.poke();
                    }
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the store did not answer within 5 s".into()),
        }
    }

    /// Replays the spill file into the store; false if the store failed.
    async fn replay(&mut self) -> bool {
        while self.spill.pending() {
            let (items, at) = match self.spill.read(BATCH) {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!("usage spill file unreadable: {e}");
                    return true;
                }
            };
            if !items.is_empty() && self.write(&items).await.is_err() {
                return false;
            }
            self.spill.replayed_to(at);
        }
        true
    }

    /// One round: the spill file, then the queue, until both are empty or
    /// the store fails. Returns whether the store answered.
    async fn round(&mut self, failing: &mut bool) -> bool {
        if !self.replay().await {
            return self.failed(failing, "spill replay");
        }
        loop {
            let batch = self.queue.take(BATCH);
            if batch.is_empty() {
                break;
            }
            if let Err(e) = self.write(&batch).await {
                self.queue.put_back(batch);
                return self.failed(failing, &e);
            }
            // A store slower than the load: memory stays bounded, the
            // excess waits on disk and is replayed next round.
            self.spill_excess();
        }
        if *failing {
            *failing = false;
            tracing::info!("usage records: the store answers again");
        }
        true
    }

    fn failed(&mut self, failing: &mut bool, why: &str) -> bool {
        if !*failing {
            *failing = true;
            tracing::warn!("usage records wait: {why}");
        }
        self.spill_excess();
        false
    }

    /// Past the memory bound the oldest go to the spill file.
    fn spill_excess(&mut self) {
        let over = self.queue.len().saturating_sub(MEMORY_LIMIT);
        if over > 0 {
            let items = self.queue.take(over);
            let n = items.len() as u64;
            let lost = self.spill.append(items);
            UsageStats::add(&self.stats.spilled, n - lost.len() as u64);
            if !lost.is_empty() {
                self.queue.lost(lost.len() as u64);
            }
        }
    }

    /// Writes until `finish` is set, then what is left within `deadline`,
    /// and spills the rest.
    pub(crate) async fn run(mut self, mut finish: watch::Receiver<bool>, deadline: Duration) {
        let mut failing = false;
        loop {
            let ok = self.round(&mut failing).await;
            if *finish.borrow() {
                break;
            }
            let wait = if ok { IDLE } else { IDLE * 2 };
            tokio::select! {
                _ = self.queue.wake.notified(), if ok => {}
                _ = tokio::time::sleep(wait) => {}
                // A dropped sender (start-up failed) ends the writer too.
                changed = finish.changed() => if changed.is_err() { break },
            }
        }
        let until = Instant::now() + deadline;
        while !self.queue.is_empty() && Instant::now() < until {
            if !self.round(&mut failing).await {
                break;
            }
        }
        let rest = self.queue.take(usize::MAX);
        if !rest.is_empty() {
            let n = rest.len();
            let lost = self.spill.append(rest);
            UsageStats::add(&self.stats.spilled, (n - lost.len()) as u64);
            if !lost.is_empty() {
                self.queue.lost(lost.len() as u64);
            }
            tracing::warn!(
                "{} usage records and events wait in {} for the next start",
                n - lost.len(),
                "the spill file"
            );
        }
    }
}

/// Every `every`, an interim record of each live allocation, from the
/// workers' once-a-second reports.
pub async fn interim_loop(
    registry: Arc<Registry>,
    recorder: Arc<Recorder>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::net::stopped(&mut stop) => return,
        }
        let sessions = registry.worker_sessions();
        recorder.interim(&sessions, Instant::now());
    }
}

/// Prunes records older than `days` once a day (the first a minute after
/// start).
pub async fn prune_loop(store: Store, days: u32, mut stop: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::net::stopped(&mut stop) => return,
        }
        wait = PRUNE_EVERY;
        let before = crate::store::unix_now_ms() - i64::from(days) * 86_400_000;
        match store.prune_usage(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("usage: {n} records older than {days} days pruned"),
            Err(e) => tracing::warn!("usage prune failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::query::{GroupBy, UsageQuery};

    fn record(i: usize) -> Item {
        Item::Record(Box::new(UsageRecord {
            id: format!("{i:032x}"),
            node: "n".into(),
            user: "u".into(),
            realm: "r".into(),
            credential: "static".into(),
            label: None,
            client: "192.0.2.1:1".into(),
            transport: "udp".into(),
            relayed: vec![],
            start_ms: 1_000,
            end_ms: 2_000,
            end_reason: Some("deleted".into()),
            bytes_to_peer: 1,
            packets_to_peer: 1,
            bytes_to_client: 0,
            packets_to_client: 0,
            peers: 0,
        }))
    }

    async fn stored(store: &Store) -> u64 {
        let q = UsageQuery {
            user: None,
            realm: None,
            node: None,
            from_ms: None,
            to_ms: None,
            group_by: GroupBy::None,
            limit: 1,
            cursor: None,
        };
        store.usage(&q).await.unwrap().totals.allocations
    }

    #[tokio::test]
    async fn a_failing_store_keeps_the_memory_bound_spills_the_rest_and_loses_nothing() {
        let dir = std::env::temp_dir().join(format!("tp-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}/s.db", dir.display());
        let down = Store::open(&url).await.unwrap();
        down.close().await;
        let stats = Arc::new(UsageStats::default());
        let queue = Arc::new(Queue::new(stats.clone()));
        let n = MEMORY_LIMIT + 50;
        for i in 0..n {
            queue.push(record(i));
        }
        let mut w = Writer {
            queue: queue.clone(),
            store: down,
            spill: Spill::open(&dir.join("usage.spill")),
            urls: vec![],
            stats: stats.clone(),
            delivered: None,
        };
        let mut failing = false;
        assert!(!w.round(&mut failing).await, "a closed store fails");
        assert_eq!(queue.len(), MEMORY_LIMIT, "memory holds its bound");
        assert_eq!(UsageStats::get(&stats.spilled), 50);
        assert!(w.spill.pending());
        // The store answers again: the spill file first, then memory.
        w.store = Store::open(&url).await.unwrap();
        assert!(w.round(&mut failing).await);
        assert!(queue.is_empty() && !w.spill.pending());
        assert_eq!(stored(&w.store).await, n as u64, "every record, once");
        assert_eq!(UsageStats::get(&stats.lost), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
