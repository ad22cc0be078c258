//! Start-up phase four: the loop that keeps the credentials in step with
//! the store. The relay path never waits on it: a reload swaps one `Arc`.

use std::sync::Arc;

use tokio::sync::watch;

use super::assemble::directory;
use super::stopped;
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::turn::Shared;

/// How often running servers look for store changes.
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reloads the credential snapshot whenever the store's revision moves.
/// A failing store keeps the last good snapshot and says so once.
pub(super) async fn sync_loop(
    store: Store,
    shared: Arc<Shared>,
    config: Arc<Config>,
    mut revision: i64,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SYNC_EVERY) => {}
            _ = stopped(&mut stop) => return,
        }
        let result = async {
            let now = store.revision().await?;
            if now != revision {
                let snapshot = store.snapshot(&config.realm).await?;
                shared.auth.replace(directory(&config, snapshot));
                tracing::debug!("store revision {now}: credentials reloaded");
            }
            Ok::<_, StoreError>(now)
        }
        .await;
        match result {
            Ok(now) => {
                if failing {
                    tracing::info!("store reachable again");
                }
                failing = false;
                revision = now;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("store unreachable, keeping the last credentials: {e}");
                }
                failing = true;
            }
        }
    }
}
