//! The webhook outbox (to be built on the webhooks branch).

use super::{Store, StoreError};
use crate::usage::OutboxEvent;

impl Store {
    /// Placeholder until the webhooks branch lands.
    pub(crate) async fn outbox_add(
        &self,
        _events: &[OutboxEvent],
        _urls: &[String],
        _max_rows: i64,
        _now_ms: i64,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }
}
