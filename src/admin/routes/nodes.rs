//! `/api/v1/nodes`: the fleet's node registry (issue 15). The health
//! endpoints are in `health.rs`.

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
