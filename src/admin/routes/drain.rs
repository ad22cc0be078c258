//! `/api/v1/drain` (issue 15): POST starts draining (new Allocates go to
//! other nodes, the process exits 0 when its allocations go or at the
//! deadline), DELETE ends it, GET shows it. Admin tokens only.

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::Json;
use serde::Deserialize;

use super::{body, Reply};
use crate::admin::auth::guard;
use crate::admin::{ApiError, Caller, State};
use crate::config::MAX_DRAIN_TIMEOUT;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    /// Seconds until the process exits at the latest; 0 = no deadline.
    deadline_s: Option<u64>,
}

pub(super) async fn get_drain(Extract(s): Extract<State>, caller: Caller) -> Reply {
    guard(&s, &caller, None)?;
    Ok(Json(
        serde_json::to_value(s.0.control.drain_state()).unwrap_or_default(),
    ))
}

/// Starts draining; an empty body takes `drain_timeout`. Again while
/// draining: moves the deadline.
pub(super) async fn start_drain(Extract(s): Extract<State>, caller: Caller, bytes: Bytes) -> Reply {
    let actor = guard(&s, &caller, None)?;
    let deadline_s = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        body::<DrainBody>(&bytes)?.deadline_s
    };
    if deadline_s.is_some_and(|d| d > MAX_DRAIN_TIMEOUT) {
        return Err(ApiError::bad_request(format!(
            "deadline_s must be 0-{MAX_DRAIN_TIMEOUT}"
        )));
    }
    let view = s.0.control.drain(deadline_s).await;
    tracing::info!(
        event = "drain",
        "{actor}: draining, {} allocations, deadline {:?}",
        view.allocations,
        view.deadline
    );
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

pub(super) async fn end_drain(Extract(s): Extract<State>, caller: Caller) -> Reply {
    let actor = guard(&s, &caller, None)?;
    let view = s.0.control.undrain();
    tracing::info!(event = "drain", "{actor}: drain ended, ready");
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}
