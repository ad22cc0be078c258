//! `/api/v1/reload`: the TLS certificate and key, read again.

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use super::Reply;
use crate::admin::auth::guard;
use crate::admin::{ApiError, Caller, CertReload, State};

/// Reads the TLS certificate and key again. A bad file keeps the old pair
/// and answers 422 with the reason (which names the file, never its bytes).
pub(super) async fn reload(Extract(s): Extract<State>, caller: Caller) -> Reply {
    let actor = guard(&s, &caller, None)?;
    match s.0.control.reload_certs() {
        CertReload::NotConfigured => Ok(Json(json!({"tls": "not configured"}))),
        CertReload::Reloaded => {
            tracing::info!("{actor}: TLS certificate reloaded");
            Ok(Json(json!({"tls": "reloaded"})))
        }
        CertReload::Kept(e) => {
            tracing::warn!("{actor}: TLS reload failed, keeping the old certificate: {e}");
            Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("kept the old certificate: {e}"),
            ))
        }
    }
}
