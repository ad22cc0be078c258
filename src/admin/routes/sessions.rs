//! `/api/v1/sessions`: live allocations of every live node, and ending
//! one on whichever node owns it.
//!
//! This node's sessions come from its workers; the other nodes' from what
//! they published with their last heartbeat (`store::fleet_sessions`),
//! skipped once a node is down. Ending another node's session queues a
//! command its owner takes within a second (at once with PostgreSQL).
//!
//! A realm token lists and ends its realm's sessions only; another
//! realm's session is as unknown to it as a session that does not exist.

use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Path, Query, Reply};
use crate::admin::control::split_session_id;
use crate::admin::token::Scope;
use crate::admin::{ApiError, Caller, State};
use crate::store::fleet_sessions::Queued;

#[derive(Debug, Deserialize)]
pub(super) struct NodeQuery {
    /// Only this node's sessions.
    node: Option<String>,
}

pub(super) async fn list_sessions(
    Extract(s): Extract<State>,
    caller: Caller,
    Query(q): Query<NodeQuery>,
) -> Reply {
    let (_, scope) = s.0.authorize(&caller)?;
    let me = s.0.config.node_name.as_str();
    let wanted = |node: &str| q.node.as_deref().map_or(true, |n| n == node);
    let mut sessions: Vec<Value> = Vec::new();
    if wanted(me) {
        sessions = s.0.control.session_entries(me);
    }
    // Asking for this node alone needs no store (a node cut off from it
    // can still show its own).
    if q.node.as_deref() != Some(me) {
        for (node, entries) in fleet_view(&s).await? {
            if node != me && wanted(&node) {
                sessions.extend(entries);
            }
        }
    }
    sessions.retain(|e| visible(&scope, e));
    Ok(Json(json!({"sessions": sessions})))
}

/// Whether a token of `scope` may see and end session entry `e`.
fn visible(scope: &Scope, e: &Value) -> bool {
    e["realm"].as_str().is_some_and(|r| scope.covers(r))
}

/// How long the fleet view may take to read: a node cut off from the
/// store answers 503 soon rather than after the pool's 10 s.
const READ_WITHIN: Duration = Duration::from_secs(3);

/// Every live node's published sessions, by node.
async fn fleet_view(s: &State) -> Result<Vec<(String, Vec<Value>)>, ApiError> {
    let now = crate::store::unix_now_ms();
    match tokio::time::timeout(READ_WITHIN, s.0.store.fleet_sessions(now)).await {
        Ok(view) => Ok(view?),
        Err(_) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "store unavailable".into(),
        )),
    }
}

pub(super) async fn end_session(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (_, scope) = s.0.authorize(&caller)?;
    let me = s.0.config.node_name.as_str();
    let gone = || ApiError::not_found("no such live session");
    let (node, local) = split_session_id(&id);
    let node = node.unwrap_or(me);
    if node == me {
        if scope != Scope::Admin {
            let mine = s.0.control.session_entries(me).into_iter().any(|e| {
                split_session_id(e["id"].as_str().unwrap_or("")).1 == local && visible(&scope, &e)
            });
            if !mine {
                return Err(gone());
            }
        }
        return if s.0.control.end_session(local).await {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(gone())
        };
    }
    // Another node's: only a session its last heartbeat listed.
    let now = crate::store::unix_now_ms();
    let listed =
        s.0.store
            .fleet_sessions(now)
            .await?
            .into_iter()
            .any(|(n, entries)| {
                n == node
                    && entries
                        .iter()
                        .any(|e| e["id"].as_str() == Some(id.as_str()) && visible(&scope, e))
            });
    if !listed {
        return Err(gone());
    }
    let now = crate::store::unix_now_ms();
    match s.0.store.queue_session_end(node, local, now).await? {
        Queued::Yes => Ok(StatusCode::NO_CONTENT),
        Queued::Full => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {node} has too many sessions waiting to end; try again"),
        )),
    }
}
