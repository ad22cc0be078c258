//! Usage records in the store (to be built on the usage-store branch).

use super::{Store, StoreError};
use crate::usage::UsageRecord;

impl Store {
    /// Placeholder until the usage-store branch lands.
    pub(crate) async fn write_usage(&self, _records: &[UsageRecord]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Placeholder until the usage-store branch lands.
    pub(crate) async fn prune_usage(&self, _before_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
}
