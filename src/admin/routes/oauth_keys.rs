//! `/api/v1/oauth-keys`: keys that OAuth access tokens are sealed with.

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Path, Reply};
use crate::admin::auth::guard;
use crate::admin::{ApiError, Caller, State};

pub(super) async fn list_keys(Extract(s): Extract<State>, caller: Caller) -> Reply {
    guard(&s, &caller, None)?;
    Ok(Json(
        json!({"oauth_keys": s.0.store.oauth_key_rows().await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    kid: String,
    key: String,
    alg: String,
    #[serde(default)]
    lifetime: i64,
}

pub(super) async fn add_key(
    Extract(s): Extract<State>,
    caller: Caller,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let actor = guard(&s, &caller, None)?;
    let k: NewKey = body(&bytes)?;
    s.0.store
        .add_oauth_key(&actor, &k.kid, &k.key, &k.alg, k.lifetime)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"kid": k.kid, "alg": k.alg, "lifetime": k.lifetime})),
    ))
}

pub(super) async fn remove_key(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = guard(&s, &caller, None)?;
    s.0.store.remove_oauth_key(&actor, &kid).await?;
    Ok(StatusCode::NO_CONTENT)
}
