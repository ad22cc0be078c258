//! Usage accounting and events (issue 18), the shell's side: records and
//! events come from the core's events (never the relay path), wait in a
//! bounded queue, and are written to the store in batches; webhooks are
//! delivered from the store's outbox.
//!
//! * [`record`]: what is written and sent.
//! * [`query`]: asking for usage (the API's and the CLI's parameters and
//!   answer).
//! * [`recorder`]: core events into records and events.
//! * [`queue`], [`spill`], [`writer`]: the way to the store, bounded.
//! * [`stats`]: counters for `/metrics`.
//! * [`webhook`]: signing and delivery from the outbox.

#![warn(unreachable_pub, missing_debug_implementations)]

pub mod query;
pub mod queue;
pub mod record;
pub mod recorder;
pub mod spill;
pub mod stats;
pub mod webhook;
pub mod writer;

pub use record::{OutboxEvent, UsageRecord};
pub use stats::UsageStats;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::net::control::Registry;
use crate::store::Store;

/// How long the last writes may take when the process stops; what is
/// left goes to the spill file.
const FINISH_WITHIN: Duration = Duration::from_secs(5);

/// Usage accounting and webhooks while the server runs.
#[derive(Debug)]
pub struct Usage {
    /// What the workers report to.
    pub recorder: Arc<recorder::Recorder>,
    pub stats: Arc<UsageStats>,
    finish: watch::Sender<bool>,
    writer: tokio::task::JoinHandle<()>,
    webhooks: Option<tokio::task::JoinHandle<()>>,
}

impl Usage {
    /// Starts the writer (it replays an earlier run's spill file first)
    /// and, with webhook URLs, delivery, which runs until `stop`.
    pub(crate) fn start(
        config: &Config,
        store: &Store,
        stop: &watch::Receiver<bool>,
    ) -> Result<Usage, webhook::WebhookError> {
        let stats = Arc::new(UsageStats::default());
        let mut delivered = None;
        let mut webhooks = None;
        if let (false, Some(secret)) = (config.webhook_urls.is_empty(), &config.webhook_secret) {
            let w = webhook::Webhooks::new(
                store.clone(),
                config.webhook_urls.clone(),
                secret.clone(),
                config.webhook_max_age,
                config.node_name.clone(),
                stats.clone(),
            )?;
            delivered = Some(w.poker());
            webhooks = Some(tokio::spawn(w.run(stop.clone())));
        }
        let queue = Arc::new(queue::Queue::new(stats.clone()));
        let recorder = Arc::new(recorder::Recorder::new(
            &config.node_name,
            config.rest_api_separator,
            queue.clone(),
            !config.webhook_urls.is_empty(),
            stats.clone(),
        ));
        let writer = writer::Writer {
            queue,
            store: store.clone(),
            spill: spill::Spill::open(&config.usage_spill_file),
            urls: config.webhook_urls.clone(),
            stats: stats.clone(),
            delivered,
        };
        let (finish, finish_rx) = watch::channel(false);
        let writer = tokio::spawn(writer.run(finish_rx, FINISH_WITHIN));
        Ok(Usage {
            recorder,
            stats,
            finish,
            writer,
            webhooks,
        })
    }

    /// The interim snapshots and the retention prune, until `stop`.
    pub fn start_loops(
        &self,
        config: &Config,
        store: &Store,
        registry: Arc<Registry>,
        stop: &watch::Receiver<bool>,
    ) {
        if let Some(every) = config.usage_interim {
            tokio::spawn(writer::interim_loop(
                registry,
                self.recorder.clone(),
                every,
                stop.clone(),
            ));
        }
        if config.usage_retention_days > 0 {
            tokio::spawn(writer::prune_loop(
                store.clone(),
                config.usage_retention_days,
                stop.clone(),
            ));
        }
    }

    /// After the workers have stopped (their allocations ended and
    /// queued): writes what is left, or spills it.
    pub async fn finish(self) {
        let _ = self.finish.send(true);
        let _ = self.writer.await;
        // Delivery stopped with the server; an answer in flight is
        // recorded before it returns.
        if let Some(w) = self.webhooks {
            let _ = w.await;
        }
    }
}
