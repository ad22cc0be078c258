//! `/api/v1/users`: long-term users of a realm.

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Path, Query, RealmQuery, Reply};
use crate::admin::auth::{guard, may};
use crate::admin::{ApiError, Caller, State};

pub(super) async fn list_users(
    Extract(s): Extract<State>,
    caller: Caller,
    Query(q): Query<RealmQuery>,
) -> Reply {
    let realm = q.realm(&s);
    guard(&s, &caller, Some(realm))?;
    Ok(Json(json!({"users": s.0.store.users(Some(realm)).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    realm: Option<String>,
}

pub(super) async fn add_user(
    Extract(s): Extract<State>,
    caller: Caller,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Authenticate before reading anything the caller sent.
    let (sub, scope) = s.0.authorize(&caller)?;
    let u: NewUser = body(&bytes)?;
    let realm = u.realm.clone().unwrap_or_else(|| s.0.config.realm.clone());
    let actor = may(&sub, &scope, Some(&realm))?;
    s.0.store
        .add_user(&actor, &realm, &u.username, &u.password)
        .await?;
    let row = s.0.store.user(&realm, &u.username).await?;
    Ok((StatusCode::CREATED, Json(json!(row))))
}

pub(super) async fn get_user(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RealmQuery>,
) -> Reply {
    let realm = q.realm(&s);
    guard(&s, &caller, Some(realm))?;
    match s.0.store.user(realm, &name).await? {
        Some(u) => Ok(Json(json!(u))),
        None => Err(ApiError::not_found("user does not exist")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    password: String,
}

pub(super) async fn patch_user(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RealmQuery>,
    bytes: Bytes,
) -> Reply {
    let realm = q.realm(&s);
    let actor = guard(&s, &caller, Some(realm))?;
    let p: UserPatch = body(&bytes)?;
    s.0.store
        .set_password(&actor, realm, &name, &p.password)
        .await?;
    Ok(Json(json!(s.0.store.user(realm, &name).await?)))
}

pub(super) async fn remove_user(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RealmQuery>,
) -> Result<StatusCode, ApiError> {
    let realm = q.realm(&s);
    let actor = guard(&s, &caller, Some(realm))?;
    s.0.store.remove_user(&actor, realm, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
