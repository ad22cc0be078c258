//! Usage accounting and events (issue 18), the shell's side: records and
//! events come from the core's events (never the relay path), wait in a
//! bounded queue, and are written to the store in batches; webhooks are
//! delivered from the store's outbox.
//!
//! * [`record`]: what is written and sent.
//! * [`query`]: asking for usage (the API's and the CLI's parameters and
//!   answer).
//! * [`stats`]: counters for `/metrics`.
//! * [`webhook`]: signing and delivery from the outbox.

#![warn(unreachable_pub, missing_debug_implementations)]

pub mod query;
pub mod record;
pub mod stats;
pub mod webhook;

pub use record::{OutboxEvent, UsageRecord};
pub use stats::UsageStats;
