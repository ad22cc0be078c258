//! `/api/v1/acme/renew`: an ACME certificate order now (issue 19).

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use super::Reply;
use crate::admin::auth::guard;
use crate::admin::{ApiError, Caller, State};

/// Orders a certificate now and answers once it is served (200, with its
/// serial and expiry) or the order failed (502, with the CA's reason). 404
/// when ACME is not configured. Existing connections keep their keys.
pub(super) async fn renew(Extract(s): Extract<State>, caller: Caller) -> Reply {
    let actor = guard(&s, &caller, None)?;
    tracing::info!(event = "acme", "{actor}: forced certificate renewal");
    match s.0.control.acme_renew().await {
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "ACME is not configured (acme_directory)".into(),
        )),
        Some(Ok((serial, not_after))) => Ok(Json(json!({
            "serial": serial,
            "not_after": not_after,
        }))),
        Some(Err(e)) => Err(ApiError(StatusCode::BAD_GATEWAY, e)),
    }
}
