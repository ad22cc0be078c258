//! Fleet quotas, the shell's node-wide side (issue 15). With a PostgreSQL
//! store, each Allocate that passed the local count is also counted
//! against every live node's allocations ([`FleetQuota::reserve`]: a tokio
//! task on the server's runtime, bounded in number and time; the worker
//! gets the answer as one more input). Ended allocations give their row
//! back ([`FleetQuota::release`]), and every heartbeat period this node's
//! rows are rewritten from its live allocations (`reconcile_loop`), so rows
//! lost or left by an outage are put right.
//!
//! If the store is unreachable or slow, every node counts its quotas
//! locally (the full quota each, as with SQLite), says so once in the log
//! and in /metrics, and says so again when a reconciliation succeeds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};

use super::heartbeat::HEARTBEAT_EVERY;
use super::stopped;
use crate::store::fleet_quota::FleetAllocation;
use crate::store::{unix_now_ms, Store};
use crate::turn::quota::{FleetLimits, QuotaAnswer};
use crate::turn::Shared;

/// Longest an Allocate waits for the store's count; past it the node
/// counts locally until the store answers a reconciliation again.
pub(crate) const QUOTA_TIMEOUT: Duration = Duration::from_secs(1);

/// Store calls (reserve and release) in flight at once; past it an
/// Allocate gets 508 and a release is left to the next reconciliation.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// This node's allocations as the fleet counts them.
pub(crate) struct FleetQuota {
    store: Store,
    node: String,
    shared: Arc<Shared>,
    /// The server's runtime: store calls never run on a worker thread.
    runtime: Handle,
    in_flight: Arc<Semaphore>,
    next_id: AtomicI64,
    /// Allocations asked for (`granted` false while the store is asked)
    /// or counted, by id.
    live: Mutex<HashMap<i64, Held>>,
}

struct Held {
    allocation: FleetAllocation,
    granted: bool,
}

/// Turns fleet quotas on when `store` is shared (PostgreSQL) and starts
/// the reconciliation; None with SQLite (quotas stay purely local).
pub(crate) fn start(
    store: &Store,
    node: &str,
    shared: &Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Option<Arc<FleetQuota>> {
    if !store.is_shared() {
        return None;
    }
    let fleet = Arc::new(FleetQuota {
        store: store.clone(),
        node: node.to_string(),
        shared: shared.clone(),
        runtime: Handle::current(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        // Ids also differ from a previous run's under the same node name
        // (its rows may outlive it until the first reconciliation).
        next_id: AtomicI64::new(unix_now_ms() << 10),
        live: Mutex::default(),
    });
    shared.quotas.enable_fleet();
    tokio::spawn(reconcile_loop(fleet.clone(), stop));
    Some(fleet)
}

impl FleetQuota {
    fn live(&self) -> MutexGuard<'_, HashMap<i64, Held>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new allocation id, unique on this node for its life.
    pub(crate) fn new_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts allocation `id` of `user` fleet-wide against `limits`;
    /// `reply` gets the answer once, from a runtime task (or right away
    /// when counting is local or too many are asked already).
    pub(crate) fn reserve(
        self: &Arc<Self>,
        id: i64,
        user: String,
        realm: String,
        limits: FleetLimits,
        reply: impl FnOnce(QuotaAnswer) + Send + 'static,
    ) {
        let allocation = FleetAllocation { id, realm, user };
        if self.shared.quotas.fleet.local_fallback() {
            // Counted locally already (the core did, before asking).
            self.live().insert(
                id,
                Held {
                    allocation,
                    granted: true,
                },
            );
            return reply(QuotaAnswer::Granted);
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return reply(QuotaAnswer::Busy);
        };
        self.live().insert(
            id,
            Held {
                allocation: allocation.clone(),
                granted: false,
            },
        );
        let me = self.clone();
        self.runtime.spawn(async move {
            let _permit = permit;
            let asked = me
                .store
                .reserve_allocation(&me.node, &allocation, limits, unix_now_ms());
            let answer = match tokio::time::timeout(QUOTA_TIMEOUT, asked).await {
                Ok(Ok(true)) => QuotaAnswer::Granted,
                Ok(Ok(false)) => QuotaAnswer::Exceeded,
                Ok(Err(e)) => {
                    me.fall_back(&e.to_string());
                    QuotaAnswer::Granted
                }
                Err(_) => {
                    me.fall_back("no answer within 1 s");
                    QuotaAnswer::Granted
                }
            };
            let ended = {
                let mut live = me.live();
                match (answer, live.get_mut(&id)) {
                    (QuotaAnswer::Granted, Some(h)) => {
                        h.granted = true;
                        false
                    }
                    (QuotaAnswer::Granted, None) => true,
                    _ => {
                        live.remove(&id);
                        false
                    }
                }
            };
            if ended {
                // The allocation ended while the store was asked: its row
                // goes now (or with the next reconciliation).
                let _ =
                    tokio::time::timeout(QUOTA_TIMEOUT, me.store.release_allocation(&me.node, id))
                        .await;
            }
            reply(answer);
        });
    }

    /// Allocation `id` ended: its row goes. Never waits; a release that
    /// cannot be sent now is left to the next reconciliation.
    pub(crate) fn release(self: &Arc<Self>, id: i64) {
        // Refused, or still asked for: the reserving task sees it gone.
        if !self.live().remove(&id).is_some_and(|h| h.granted) {
            return;
        }
        if self.shared.quotas.fleet.local_fallback() {
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return;
        };
        let me = self.clone();
        self.runtime.spawn(async move {
            let _permit = permit;
            let sent =
                tokio::time::timeout(QUOTA_TIMEOUT, me.store.release_allocation(&me.node, id))
                    .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => me.fall_back(&e.to_string()),
                Err(_) => me.fall_back("no answer within 1 s"),
            }
        });
    }

    /// Rewrites this node's rows from its counted allocations; the store
    /// answering ends a local fallback.
    async fn reconcile(&self) {
        let (mut live, mut asking) = (Vec::new(), Vec::new());
        for (id, h) in self.live().iter() {
            if h.granted {
                live.push(h.allocation.clone());
            } else {
                asking.push(*id);
            }
        }
        let done = self
            .store
            .reconcile_allocations(&self.node, &live, &asking, unix_now_ms());
        match tokio::time::timeout(HEARTBEAT_EVERY, done).await {
            Ok(Ok(_)) => {
                if self.shared.quotas.fleet.recover() {
                    tracing::info!(
                        event = "store_reachable",
                        "fleet quotas: the store answers again; quotas count the whole fleet"
                    );
                }
            }
            Ok(Err(e)) => self.fall_back(&e.to_string()),
            Err(_) => self.fall_back("no answer within 2 s"),
        }
    }

    /// The store did not answer: count locally, and say so once.
    fn fall_back(&self, why: &str) {
        if self.shared.quotas.fleet.fall_back() {
            tracing::warn!(
                event = "store_unreachable",
                "fleet quotas: store unreachable ({why}); this node enforces every quota locally until it answers"
            );
        }
    }
}

/// Every heartbeat period: this node's rows made right. On stop they are
/// deleted, so a node stopped cleanly frees its places at once.
async fn reconcile_loop(fleet: Arc<FleetQuota>, mut stop: watch::Receiver<bool>) {
    loop {
        fleet.reconcile().await;
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    let cleared = fleet
        .store
        .reconcile_allocations(&fleet.node, &[], &[], unix_now_ms());
    let _ = tokio::time::timeout(QUOTA_TIMEOUT, cleared).await;
}
