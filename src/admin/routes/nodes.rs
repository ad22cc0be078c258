//! `/api/v1/nodes`: the fleet's node registry (issue 15), and the health
//! endpoints balancers and orchestrators poll.

use axum::extract::State as Extract;
use axum::Json;
use serde_json::json;

use super::Reply;
use crate::admin::auth::guard;
use crate::admin::{Caller, State};
use crate::store::unix_now_ms;

pub(super) async fn list_nodes(Extract(s): Extract<State>, caller: Caller) -> Reply {
    guard(&s, &caller, None)?;
    let now = unix_now_ms();
    let nodes: Vec<_> =
        s.0.store
            .nodes()
            .await?
            .iter()
            .map(|n| {
                json!({
                    "name": n.name,
                    "region": n.region,
                    "state": n.state_at(now),
                    "allocations": n.allocations,
                    "relayed_bps": n.relayed_bps,
                    "urls": n.urls,
                    "last_seen": n.last_seen / 1000,
                })
            })
            .collect();
    Ok(Json(json!({"nodes": nodes})))
}

/// 200 while the process serves (the admin listener answering is the
/// proof).
pub(super) async fn livez() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when this node takes new allocations. Every listener is bound
/// before the admin API starts, so today a reachable node is ready;
/// draining (issue 15) will answer 503 here.
pub(super) async fn readyz() -> Json<serde_json::Value> {
    Json(json!({"status": "ready"}))
}
