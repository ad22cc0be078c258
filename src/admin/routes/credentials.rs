//! `/api/v1/credentials`: time-limited REST credentials and ICE servers
//! for WebRTC backends.

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{body, Reply};
use crate::admin::auth::guard;
use crate::admin::{ApiError, Caller, State};
use crate::auth::rest;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialRequest {
    user: String,
    #[serde(default = "default_ttl")]
    ttl: u64,
}

fn default_ttl() -> u64 {
    86_400
}

pub(super) async fn credentials(Extract(s): Extract<State>, caller: Caller, bytes: Bytes) -> Reply {
    let realm = s.0.config.realm.clone();
    guard(&s, &caller, Some(&realm))?;
    let r: CredentialRequest = body(&bytes)?;
    if r.ttl == 0 || r.ttl > 30 * 86_400 {
        return Err(ApiError::bad_request("ttl must be 1 s to 30 days"));
    }
    // Stored secrets come oldest first, so the last is the newest; with
    // none stored, the last static one.
    let mut secrets = s.0.config.static_auth_secrets.clone();
    secrets.extend(s.0.store.secret_values(&realm).await?);
    let Some(secret) = secrets.last() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "no REST secret: set static_auth_secret or add one".into(),
        ));
    };
    let (username, password) = rest::mint(
        &secret.0,
        &r.user,
        r.ttl,
        s.0.config.rest_api_separator,
        crate::store::unix_now() as u64,
    );
    let urls = s.0.control.ice_urls();
    Ok(Json(json!({
        "username": username,
        "password": password,
        "ttl": r.ttl,
        "uris": urls,
        "iceServers": [{"urls": urls, "username": username, "credential": password}],
    })))
}
