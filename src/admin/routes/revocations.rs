//! `/api/v1/credentials/revoke` and `/api/v1/credentials/revocations`:
//! names every node refuses (issue 19). The store does the work
//! (`store/revocations.rs`); every node loads it with its next snapshot
//! and ends the name's allocations on its next tick.

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Path, Query, RealmQuery, Reply};
use crate::admin::auth::{guard, may};
use crate::admin::{ApiError, Caller, State};
use crate::store::unix_now;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    username: String,
    realm: Option<String>,
}

/// 201 with the new revocation, 200 with the one already there.
pub(super) async fn revoke(
    Extract(s): Extract<State>,
    caller: Caller,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Authenticate before reading anything the caller sent.
    let (sub, scope) = s.0.authorize(&caller)?;
    let r: Revoke = body(&bytes)?;
    let realm = r.realm.unwrap_or_else(|| s.0.config.realm.clone());
    let actor = may(&sub, &scope, Some(&realm))?;
    let sep = s.0.config.rest_api_separator;
    let (row, new) =
        s.0.store
            .revoke(&actor, &realm, &r.username, sep, unix_now())
            .await?;
    if new {
        tracing::info!(
            event = "credential_revoked",
            kind = row.kind,
            expires_at = row.expires_at,
            "{actor} revoked a {} credential in realm {realm}",
            row.kind
        );
    }
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(row))))
}

pub(super) async fn list_revocations(
    Extract(s): Extract<State>,
    caller: Caller,
    Query(q): Query<RealmQuery>,
) -> Reply {
    let realm = q.realm(&s);
    guard(&s, &caller, Some(realm))?;
    let rows = s.0.store.revocations(Some(realm), unix_now()).await?;
    Ok(Json(json!({"revocations": rows})))
}

pub(super) async fn remove_revocation(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RealmQuery>,
) -> Result<StatusCode, ApiError> {
    let realm = q.realm(&s);
    let actor = guard(&s, &caller, Some(realm))?;
    s.0.store.unrevoke(&actor, realm, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
