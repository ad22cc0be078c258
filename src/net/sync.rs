//! Start-up phase four: the loop that keeps the credentials in step with
//! the store. The relay path never waits on it: a reload swaps one `Arc`.
//!
//! It looks at the store's revision when PostgreSQL announces a change
//! ([`super::listen`]) and, as the fallback and SQLite's only way, every
//! [`SYNC_EVERY`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::assemble::directories;
use super::stopped;
use crate::config::Config;
use crate::store::{Snapshots, Store, StoreError};
use crate::turn::Shared;

/// How often running servers look for store changes without being told.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The credential directory's two halves: the config's static users and
/// secrets (a reload changes them) and the store's last snapshot (this
/// loop changes it). A change to either rebuilds the whole.
pub(super) struct CredentialHalves {
    shared: Arc<Shared>,
    halves: Mutex<(Arc<Config>, Snapshots)>,
}

impl CredentialHalves {
    pub(super) fn new(shared: Arc<Shared>, config: Arc<Config>, stored: Snapshots) -> Self {
        CredentialHalves {
            shared,
            halves: Mutex::new((config, stored)),
        }
    }

    fn rebuild(&self, change: impl FnOnce(&mut (Arc<Config>, Snapshots))) {
        let mut h = self.halves.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut h);
        self.shared.auth.replace_all(directories(&h.0, &h.1));
    }

    /// New static users and secrets (a reload).
    pub(super) fn set_config(&self, config: Arc<Config>) {
        self.rebuild(|h| h.0 = config);
    }

    fn set_stored(&self, stored: Snapshots) {
        self.rebuild(|h| h.1 = stored);
    }
}

/// Reloads every served realm's credential snapshot whenever the store's
/// revision moves.
/// A failing store keeps the last good snapshot and says so once.
pub(super) async fn sync_loop(
    store: Store,
    credentials: Arc<CredentialHalves>,
    realms: Vec<String>,
    revision: i64,
    wake: Arc<super::listen::Wakeups>,
    stop: watch::Receiver<bool>,
) {
    let follow = Follow {
        store,
        realms,
        every: SYNC_EVERY,
        revision,
    };
    follow
        .run(&wake.revision, stop, |snapshot| {
            credentials.set_stored(snapshot)
        })
        .await
}

/// What the loop follows: the store's revision, for these realms.
struct Follow {
    store: Store,
    realms: Vec<String>,
    /// The poll period.
    every: Duration,
    /// The revision last loaded.
    revision: i64,
}

/// The longest one revision check and reload may take.
const STORE_CALL_WITHIN: Duration = Duration::from_secs(5);

impl Follow {
    /// Checks the revision on each wake-up or poll and hands `reload` a
    /// fresh snapshot when it moved, until `stop`.
    async fn run(
        mut self,
        wake: &Notify,
        mut stop: watch::Receiver<bool>,
        mut reload: impl FnMut(Snapshots),
    ) {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = wake.notified() => {}
                _ = stopped(&mut stop) => return,
            }
            let check = async {
                let now = self.store.revision().await?;
                if now != self.revision {
                    reload(self.store.snapshots(&self.realms).await?);
                    tracing::debug!("store revision {now}: credentials reloaded");
                }
                Ok::<_, StoreError>(now)
            };
            // Bounded, as the heartbeat is: a connection the network
            // dropped must not stall every later reload.
            let result = match tokio::time::timeout(STORE_CALL_WITHIN, check).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {STORE_CALL_WITHIN:?}")),
            };
            match result {
                Ok(now) => {
                    if failing {
                        tracing::info!(event = "store_reachable", "store reachable again");
                    }
                    failing = false;
                    self.revision = now;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            event = "store_unreachable",
                            "store unreachable, keeping the last credentials: {e}"
                        );
                    }
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::listen::{listen_loop, Wakeups};

    /// Adds user `u{n}` through `other` and waits for a snapshot with it.
    async fn round(
        other: &Store,
        realm: &str,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
        n: usize,
    ) {
        let user = format!("u{n}");
        other.add_user("t", realm, &user, "pw").await.unwrap();
        // Other tests change the shared store too: wait for ours.
        let seen = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(users) = rx.recv().await {
                if users.contains(&user) {
                    return;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "round {n}: not loaded within 500 ms");
    }

    /// With a poll of a minute, a change made through another handle of
    /// the store is loaded at once: the notification woke the loop. When
    /// the listening connection is killed, it is back within seconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_change_is_loaded_on_its_notification_not_the_next_poll() {
        let Some(url) = crate::store::fleet_sessions::tests::pg_url() else {
            return;
        };
        let store = Store::open(&url).await.unwrap();
        let realm = format!(
            "sync-{}-{}",
            std::process::id(),
            crate::store::unix_now_ms()
        );
        let (stop, stop_rx) = watch::channel(false);
        let wake = Arc::new(Wakeups::default());
        // Named, so the test can kill this connection and no other.
        let app = format!("turnpike-sync-test-{}", std::process::id());
        let sep = if url.contains('?') { '&' } else { '?' };
        tokio::spawn(listen_loop(
            format!("{url}{sep}application_name={app}"),
            "n".into(),
            wake.clone(),
            stop_rx.clone(),
        ));
        let follow = Follow {
            store: store.clone(),
            realms: vec![realm.clone()],
            every: Duration::from_secs(60),
            revision: store.revision().await.unwrap(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let w = wake.clone();
        tokio::spawn(async move {
            follow
                .run(&w.revision, stop_rx, |s| {
                    let users = s.into_iter().flat_map(|(_, s)| s.users);
                    let _ = tx.send(users.map(|(n, _)| n).collect::<Vec<_>>());
                })
                .await
        });
        // Let the listener connect (its first wake-up reloads nothing new).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        while rx.try_recv().is_ok() {}
        let other = Store::open(&url).await.unwrap();
        for n in 0..3 {
            round(&other, &realm, &mut rx, n).await;
        }
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let killed = sqlx::query(
            "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE application_name = $1",
        )
        .bind(&app)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(sqlx::Row::try_get::<i64, _>(&killed, "n").unwrap(), 1);
        // The listener sees its connection go and connects again after
        // its first backoff (0.5 s).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        while rx.try_recv().is_ok() {}
        for n in 3..6 {
            round(&other, &realm, &mut rx, n).await;
        }
        stop.send(true).unwrap();
    }
}
