//! `/api/v1/secrets`: REST API shared secrets of a realm.

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Path, Query, RealmQuery, Reply};
use crate::admin::auth::{guard, may};
use crate::admin::{ApiError, Caller, State};

pub(super) async fn list_secrets(
    Extract(s): Extract<State>,
    caller: Caller,
    Query(q): Query<RealmQuery>,
) -> Reply {
    let realm = q.realm(&s).to_string();
    guard(&s, &caller, Some(&realm))?;
    let rows: Vec<_> =
        s.0.store
            .secrets()
            .await?
            .into_iter()
            .filter(|r| r.realm == realm)
            .collect();
    Ok(Json(json!({"secrets": rows})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSecret {
    secret: String,
    realm: Option<String>,
}

pub(super) async fn add_secret(
    Extract(s): Extract<State>,
    caller: Caller,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (sub, scope) = s.0.authorize(&caller)?;
    let n: NewSecret = body(&bytes)?;
    let realm = n.realm.unwrap_or_else(|| s.0.config.realm.clone());
    let actor = may(&sub, &scope, Some(&realm))?;
    let id = s.0.store.add_secret(&actor, &realm, &n.secret).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "realm": realm}))))
}

pub(super) async fn remove_secret(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (sub, scope) = s.0.authorize(&caller)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("secret id must be a number"))?;
    let realm =
        s.0.store
            .secrets()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .map(|r| r.realm);
    let Some(realm) = realm else {
        return Err(ApiError::not_found(format!("secret {id} does not exist")));
    };
    let actor = may(&sub, &scope, Some(&realm))?;
    s.0.store.remove_secret(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
