//! Start-up phase five: this node's row in the store's node registry
//! (issue 15), written every [`HEARTBEAT_EVERY`]. Readers call a node whose
//! row is older than `store::nodes::DOWN_AFTER_MS` down. Like the sync
//! loop, a failing store is said once and retried; nothing on the relay
//! path waits on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::control::ServerControl;
use super::stopped;
use crate::admin::Control;
use crate::config::Config;
use crate::store::nodes::NodeRow;
use crate::store::Store;

/// How often a node writes its row.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Relayed bytes both ways, from the workers' last reports.
fn relayed_bytes(control: &ServerControl) -> u64 {
    let s = control.stats();
    s.to_peer.bytes + s.to_client.bytes
}

pub(super) async fn heartbeat_loop(
    store: Store,
    control: Arc<ServerControl>,
    config: Arc<Config>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    let mut last = (Instant::now(), relayed_bytes(&control));
    // A beat every HEARTBEAT_EVERY from the start of the last one, however
    // long its writes took (the session list may take a while).
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let now = Instant::now();
        let bytes = relayed_bytes(&control);
        let secs = now.duration_since(last.0).as_secs_f64();
        let bps = if secs > 0.0 {
            (bytes.saturating_sub(last.1) as f64 * 8.0 / secs) as i64
        } else {
            0
        };
        last = (now, bytes);
        let row = NodeRow {
            name: config.node_name.clone(),
            region: config.region.clone(),
            state: control.drain.node_state().into(),
            urls: control.ice_urls(),
            allocations: i64::from(control.allocations()),
            relayed_bps: bps,
            last_seen: crate::store::unix_now_ms(),
        };
        // Bounded: a query on a connection the network dropped would
        // otherwise hang until TCP gives up, and the node would stay "down"
        // in the others' view long after the network healed.
        let written = match tokio::time::timeout(HEARTBEAT_EVERY, store.heartbeat(&row)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {HEARTBEAT_EVERY:?}")),
        };
        control
            .health
            .store_reached(written.is_ok(), Instant::now());
        match written {
            Ok(()) => {
                if failing {
                    tracing::info!(event = "store_reachable", "node registry reachable again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        event = "store_unreachable",
                        "node registry unreachable, heartbeat retried: {e}"
                    );
                }
                failing = true;
            }
        }
        super::fleet_sessions::publish(&store, &control, &config).await;
    }
}
