//! Webhooks (issue 18): events go to the store's outbox first
//! (`store::outbox`), then to each `webhook_url`, signed, at least once.
//!
//! * [`sign`]: the `Turnpike-Signature` header and its check.
//! * [`deliver`]: the delivery service, one task per receiver URL.

pub mod sign;

pub(crate) mod deliver;

pub use sign::{signature, verify, SignatureError};

// The server's interface; unused until it is wired (see deliver.rs).
pub(crate) use deliver::{Poke, WebhookError, Webhooks};

#[cfg(test)]
mod tests;
