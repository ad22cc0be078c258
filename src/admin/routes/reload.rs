//! `/api/v1/reload`: the config file and the TLS certificate, read again.

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use super::Reply;
use crate::admin::auth::guard;
use crate::admin::{ApiError, Caller, State};

/// Reads the config file and the certificate again, as SIGHUP does, and
/// says which changed keys took effect and which wait for a restart. An
/// invalid file or certificate changes nothing and answers 422 with the
/// reason (which names the key or file, never a secret).
pub(super) async fn reload(Extract(s): Extract<State>, caller: Caller) -> Reply {
    let actor = guard(&s, &caller, None)?;
    match s.0.control.reload() {
        Ok(r) => {
            r.log(&actor.to_string());
            Ok(Json(json!({
                "applied": r.applied,
                "needs_restart": r.needs_restart,
                "tls": r.tls,
            })))
        }
        Err(e) => {
            tracing::warn!(
                event = "reload",
                "{actor}: reload refused, nothing changed: {e}"
            );
            Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))
        }
    }
}
