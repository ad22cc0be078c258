//! What the admin API needs from the running server, as a handle it is
//! given: the shell implements it (`net/control.rs`), so admin never
//! reaches into the shell and the shell only depends on admin.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde_json::{json, Value};

use crate::turn::{SessionView, Stats};

/// A future the handle answers with later (ending a session runs on the
/// worker that owns it).
pub(crate) type Answer<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a reload did, as `/api/v1/reload` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReloadReport {
    /// Keys whose new values are in effect.
    pub(crate) applied: Vec<String>,
    /// Keys that changed in the file and wait for a restart.
    pub(crate) needs_restart: Vec<String>,
    /// "reloaded", or "not configured" without TLS or DTLS.
    pub(crate) tls: &'static str,
}

impl ReloadReport {
    /// The reload's lines (`event = "reload"`): what took effect, then the
    /// changed keys that wait for a restart. `who`: SIGHUP or the caller.
    pub(crate) fn log(&self, who: &str) {
        tracing::info!(
            event = "reload",
            applied = ?self.applied,
            tls = self.tls,
            "{who}: configuration reloaded"
        );
        if !self.needs_restart.is_empty() {
            tracing::warn!(
                event = "reload",
                "{who}: changed keys need a restart and were left as they were: {}",
                self.needs_restart.join(", ")
            );
        }
    }
}

/// A node's drain state, as `/api/v1/drain` shows it (issue 15).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DrainView {
    /// `ready` or `draining`.
    pub(crate) state: &'static str,
    /// Unix seconds the drain began.
    pub(crate) since: Option<u64>,
    /// Unix seconds the process exits at the latest (`None`: no deadline).
    pub(crate) deadline: Option<u64>,
    /// Allocations alive now.
    pub(crate) allocations: u32,
    /// The process exits once its allocations are at most this many.
    pub(crate) min_allocations: u32,
    /// Where new allocations are sent: `transport address` of each
    /// `ready` node's listener.
    pub(crate) alternates: Vec<String>,
}

/// Whether a node takes new allocations: `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    /// Not ready: a short reason (`starting`, `draining`,
    /// `store_unreachable`) and a sentence.
    NotReady(&'static str, String),
}

/// What the health endpoints ask: served before the rest of the server
/// exists (the `health_listen` listener comes up first).
pub(crate) trait Probe: Send + Sync {
    fn readiness(&self) -> Readiness;
}

/// The live server, as the admin API sees it.
pub(crate) trait Control: Send + Sync {
    /// Every worker's sessions (as of their last report) with their ids.
    fn sessions(&self) -> Vec<(String, SessionView)>;
    /// Counters summed over workers.
    fn stats(&self) -> Stats;
    /// Allocations alive now, over all workers.
    fn allocations(&self) -> u32;
    /// Ends a session by id; false if there is no such live session.
    fn end_session<'a>(&'a self, id: &'a str) -> Answer<'a, bool>;
    /// Reads the config file and the TLS (and DTLS) certificate and key
    /// again; an error (one line) means nothing changed.
    fn reload(&self) -> Result<ReloadReport, String>;
    /// ACME's renewal outcomes so far (successes, failures), when ACME is
    /// configured.
    fn acme_counts(&self) -> Option<(u64, u64)> {
        None
    }
    /// UDP datagrams the kernel refused to send, and failed UDP reads,
    /// since start (review I3).
    fn udp_errors(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Runs an ACME order now: `None` when ACME is not configured, else
    /// the new certificate's serial and expiry (RFC 3339) or why not.
    fn acme_renew(&self) -> Answer<'_, Option<Result<(String, u64), String>>> {
        Box::pin(async { None })
    }
    /// Starts draining (or moves the deadline of a drain under way):
    /// `deadline_s` seconds from now, `Some(0)` none, `None` the
    /// configured `drain_timeout`. Answers once the alternates are read.
    fn drain(&self, deadline_s: Option<u64>) -> Answer<'_, DrainView>;
    /// Ends a drain: the node is ready again.
    fn undrain(&self) -> DrainView;
    /// The drain state now.
    fn drain_state(&self) -> DrainView;
    /// Whether the node takes new allocations.
    fn readiness(&self) -> Readiness;
    /// `stun:`, `turn:` and `turns:` URLs of every listener, as clients
    /// should dial them.
    fn ice_urls(&self) -> Vec<String>;

    /// A self-test credential (issue 20) valid `ttl` seconds from now:
    /// a `selftest-` REST username and its password, signed with the
    /// process's self-test secret; `None` when the page is off.
    fn selftest_credential(&self, _ttl: u64) -> Option<(String, String)> {
        None
    }

    /// The REST secrets of `realm`'s credential snapshot in use (static
    /// ones first, stored ones oldest first): `/api/v1/credentials` mints
    /// with them when the store cannot be reached.
    fn rest_secrets(&self, realm: &str) -> Vec<crate::auth::rest::Secret>;

    /// Fleet quotas (issue 15): on, and counting locally for now?
    /// Usage accounting and webhook counters.
    fn usage_stats(&self) -> &crate::usage::UsageStats;

    fn fleet_quota(&self) -> &crate::turn::quota::FleetStatus;

    /// Every session as `/api/v1/sessions` lists it, on node `node`: the
    /// fleet publishes these same entries ([`fleet_session_id`]).
    fn session_entries(&self, node: &str) -> Vec<Value> {
        let now = Instant::now();
        self.sessions()
            .into_iter()
            .map(|(id, v)| {
                json!({
                    "id": fleet_session_id(node, &id),
                    "node": node,
                    "user": v.username,
                    "realm": v.realm,
                    "transport": v.tuple.transport.to_string(),
                    "client": v.tuple.client.to_string(),
                    "server": v.tuple.server.to_string(),
                    "relayed": v.relayed.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "age_seconds": now.saturating_duration_since(v.created).as_secs(),
                    "to_peer": {"packets": v.to_peer.packets, "bytes": v.to_peer.bytes},
                    "to_client": {"packets": v.to_client.packets, "bytes": v.to_client.bytes},
                })
            })
            .collect()
    }
}

/// Between the node name and the node's own session id. Node names are
/// letters, digits, '.', '_' and '-' (config/fleet.rs) and local ids
/// digits and '-', so the first '~' splits; '~' needs no escaping in a URL.
const NODE_SEPARATOR: char = '~';

/// A session id unique in the fleet: `NODE~LOCAL`.
pub(crate) fn fleet_session_id(node: &str, local: &str) -> String {
    format!("{node}{NODE_SEPARATOR}{local}")
}

/// Splits an id made by [`fleet_session_id`]: (node, local id). A bare
/// local id (as single nodes answered before fleets) has no node.
pub(crate) fn split_session_id(id: &str) -> (Option<&str>, &str) {
    match id.split_once(NODE_SEPARATOR) {
        Some((node, local)) => (Some(node), local),
        None => (None, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_session_ids_split_back_into_node_and_local_id() {
        for node in ["turn-a", "a.b_c-9", "x"] {
            let id = fleet_session_id(node, "1-22-3");
            assert_eq!(split_session_id(&id), (Some(node), "1-22-3"));
        }
        assert_eq!(split_session_id("0-1-1"), (None, "0-1-1"));
        assert_eq!(split_session_id("~0-1-1"), (Some(""), "0-1-1"));
    }
}
