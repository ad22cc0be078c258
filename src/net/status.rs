//! The node's status for `/readyz` (issue 15): whether it takes new
//! allocations. Not ready while starting (until every listener is bound and
//! the store's snapshot is loaded), while draining, and, with
//! `readyz_store_timeout`, once the store has been unreachable that long
//! (the heartbeat tells). [`Health`] exists before the rest of the server
//! so that the `health_listen` listener can say "starting".

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::admin::{Probe, Readiness};
use crate::turn::Shared;

#[derive(Debug)]
pub(crate) struct Health {
    /// Set once the server serves: its drain state is read from here.
    shared: OnceLock<Arc<Shared>>,
    store_timeout: Option<Duration>,
    /// Since when heartbeats fail (`None`: the last one worked).
    store_failing_since: Mutex<Option<Instant>>,
}

impl Health {
    pub(crate) fn new(store_timeout: Option<Duration>) -> Self {
        Health {
            shared: OnceLock::new(),
            store_timeout,
            store_failing_since: Mutex::new(None),
        }
    }

    /// Every listener is bound and the snapshot loaded: no longer starting.
    pub(crate) fn serving(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }

    /// A heartbeat's outcome at `now`.
    pub(crate) fn store_reached(&self, ok: bool, now: Instant) {
        let mut since = self.failing();
        match (ok, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(now),
            (false, Some(_)) => {}
        }
    }

    pub(crate) fn readiness_at(&self, now: Instant) -> Readiness {
        let Some(shared) = self.shared.get() else {
            return Readiness::NotReady(
                "starting",
                "listeners or the store snapshot are not ready yet".into(),
            );
        };
        if shared.drain.is_draining() {
            return Readiness::NotReady(
                "draining",
                "this node drains: new allocations go to other nodes".into(),
            );
        }
        if let (Some(limit), Some(since)) = (self.store_timeout, *self.failing()) {
            let down = now.saturating_duration_since(since);
            if down >= limit {
                return Readiness::NotReady(
                    "store_unreachable",
                    format!("the store has been unreachable for {} s", down.as_secs()),
                );
            }
        }
        Readiness::Ready
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.store_failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Sets `then` once the server's stop flag is set (or gone): the health
/// listener, up before the flag existed, stops with the server.
pub(super) async fn stop_with(
    mut server: tokio::sync::watch::Receiver<bool>,
    then: tokio::sync::watch::Sender<bool>,
) {
    super::stopped(&mut server).await;
    let _ = then.send(true);
}

impl Probe for Health {
    fn readiness(&self) -> Readiness {
        self.readiness_at(Instant::now())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::auth::nonce::NonceIssuer;
    use crate::auth::{Authenticator, Credentials, Directory};
    use crate::turn::ports::PortPool;
    use crate::turn::quota::Quotas;
    use crate::turn::{SharedKeys, TurnConfig};

    /// Shared state with no relay addresses and no users.
    pub(in crate::net) fn shared() -> Arc<Shared> {
        let t0 = Instant::now();
        let nonces = NonceIssuer::new([1; 32], t0, Duration::from_secs(600), 0);
        let auth = Authenticator::new(Directory::new(Credentials::new("r")), nonces);
        let config = TurnConfig {
            relay_ips: vec![],
            external_ips: vec![],
            default_lifetime: crate::turn::DEFAULT_LIFETIME,
            max_lifetime: crate::turn::MAX_LIFETIME,
            max_permissions: 1,
            max_channels: 1,
            max_bps: 0,
            software: None,
            policy: crate::turn::policy::PeerPolicy::new(vec![], vec![], false, vec![]),
            clients: Default::default(),
            auth_reply_rate: 0,
            strict_expiry: false,
            tcp_relay: false,
            max_peer_connections: 1,
            max_peer_connections_per_user: 1,
            stun_backward_compatibility: false,
        };
        let keys = SharedKeys {
            reservation_token: [2; 32],
            reply_budget: [3; 32],
        };
        Arc::new(Shared::new(
            config,
            auth,
            Quotas::new(0, 0),
            PortPool::new(50000, 50010),
            keys,
        ))
    }

    fn reason(r: Readiness) -> &'static str {
        match r {
            Readiness::Ready => "ready",
            Readiness::NotReady(reason, _) => reason,
        }
    }

    #[test]
    fn starting_then_ready_then_draining_then_ready_again() {
        let h = Health::new(None);
        let now = Instant::now();
        assert_eq!(reason(h.readiness_at(now)), "starting");
        let s = shared();
        h.serving(s.clone());
        assert_eq!(reason(h.readiness_at(now)), "ready");
        s.drain.set_draining(true);
        assert_eq!(reason(h.readiness_at(now)), "draining");
        s.drain.set_draining(false);
        assert_eq!(reason(h.readiness_at(now)), "ready");
    }

    #[test]
    fn a_store_unreachable_longer_than_the_timeout_makes_the_node_unready() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let h = Health::new(Some(Duration::from_secs(30)));
        h.serving(shared());
        h.store_reached(false, at(0));
        h.store_reached(false, at(10));
        assert_eq!(reason(h.readiness_at(at(29))), "ready", "29 s is not 30");
        assert_eq!(reason(h.readiness_at(at(30))), "store_unreachable");
        h.store_reached(true, at(31));
        assert_eq!(reason(h.readiness_at(at(31))), "ready");
        // Without the setting the store never counts.
        let off = Health::new(None);
        off.serving(shared());
        off.store_reached(false, at(0));
        assert_eq!(reason(off.readiness_at(at(3600))), "ready");
    }
}
