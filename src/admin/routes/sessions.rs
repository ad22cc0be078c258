//! `/api/v1/sessions`: live allocations, and ending one.

use std::time::Instant;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{Path, Reply};
use crate::admin::auth::guard;
use crate::admin::{ApiError, Caller, State};

pub(super) async fn list_sessions(Extract(s): Extract<State>, caller: Caller) -> Reply {
    guard(&s, &caller, None)?;
    let now = Instant::now();
    let sessions: Vec<Value> =
        s.0.control
            .sessions()
            .into_iter()
            .map(|(id, v)| {
                json!({
                    "id": id,
                    "user": v.username,
                    "transport": v.tuple.transport.to_string(),
                    "client": v.tuple.client.to_string(),
                    "server": v.tuple.server.to_string(),
                    "relayed": v.relayed.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "age_seconds": now.saturating_duration_since(v.created).as_secs(),
                    "to_peer": {"packets": v.to_peer.packets, "bytes": v.to_peer.bytes},
                    "to_client": {"packets": v.to_client.packets, "bytes": v.to_client.bytes},
                })
            })
            .collect();
    Ok(Json(json!({"sessions": sessions})))
}

pub(super) async fn end_session(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    guard(&s, &caller, None)?;
    if s.0.control.end_session(&id).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such live session"))
    }
}
