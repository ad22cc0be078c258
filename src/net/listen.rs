//! PostgreSQL LISTEN (issue 15): store changes and session commands reach
//! this node at once instead of at the next poll.
//!
//! One connection listens on the store's channels and wakes the loops that
//! care ([`Wakeups`]). The loops keep polling, so a notification lost while
//! the connection is down only delays them to their next poll; on every
//! (re)connect both are woken to catch up. A failed or silent connection
//! is replaced with backoff. Nothing here is on the relay path.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{watch, Notify};

use super::stopped;
use crate::store::fleet_sessions::SESSIONS_CHANNEL;
use crate::store::REVISION_CHANNEL;

/// Wakes the sync loop (the revision moved) and the session command
/// runner (a command for this node). A wake-up with no one waiting is
/// kept for the next wait, so none is lost while a loop is busy.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    pub(crate) revision: Notify,
    pub(crate) commands: Notify,
}

impl Wakeups {
    fn all(&self) {
        self.revision.notify_one();
        self.commands.notify_one();
    }
}

/// The first retry after a failure; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long connecting (or a liveness check) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After this long without a notification the connection is checked: a
/// cut-off network can leave it silently dead.
const CHECK_AFTER: Duration = Duration::from_secs(15);

/// Listens on `url` until `stop`, waking `wake`; `node` is this node's
/// name (session commands name their owner).
pub(super) async fn listen_loop(
    url: String,
    node: String,
    wake: Arc<Wakeups>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let outcome = tokio::select! {
            r = listen_once(&url, &node, &wake, &mut failing) => r,
            _ = stopped(&mut stop) => return,
        };
        match outcome {
            // It was up: start the backoff over.
            Ok(()) => {
                tracing::debug!("store notification connection closed, reconnecting");
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("store notifications lost, polling until they are back: {e}");
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: Ok when it was up and then went away.
async fn listen_once(
    url: &str,
    node: &str,
    wake: &Wakeups,
    failing: &mut bool,
) -> Result<(), String> {
    let mut listener = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut l = PgListener::connect(url).await?;
        l.listen_all([REVISION_CHANNEL, SESSIONS_CHANNEL]).await?;
        Ok::<_, sqlx::Error>(l)
    })
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    if *failing {
        tracing::info!("store notifications back");
        *failing = false;
    }
    // Whatever changed while no one listened.
    wake.all();
    loop {
        match tokio::time::timeout(CHECK_AFTER, listener.try_recv()).await {
            Ok(Ok(Some(n))) => {
                if n.channel() == REVISION_CHANNEL {
                    wake.revision.notify_one();
                } else if n.payload() == node {
                    wake.commands.notify_one();
                }
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                // Quiet for a while: is the connection still there?
                let ping = sqlx::query("SELECT 1").execute(&mut listener);
                match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("connection silent".into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_retried_and_stop_ends_the_loop() {
        // Nothing listens on port 1: every connect fails fast.
        let (stop, rx) = watch::channel(false);
        let wake = Arc::new(Wakeups::default());
        let task = tokio::spawn(listen_loop(
            "postgres://x:y@127.0.0.1:1/none".into(),
            "n".into(),
            wake,
            rx,
        ));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!task.is_finished(), "it keeps retrying");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("stops")
            .unwrap();
    }
}
