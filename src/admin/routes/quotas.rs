//! `/api/v1/quotas`: allocation and bandwidth quotas per user and realm.

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{body, Path, Query, RealmQuery, Reply};
use crate::admin::auth::guard;
use crate::admin::{Caller, State};
use crate::store::QuotaRow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    allocations: Option<i64>,
    bps: Option<i64>,
}

pub(super) async fn get_user_quota(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RealmQuery>,
) -> Reply {
    let realm = q.realm(&s);
    guard(&s, &caller, Some(realm))?;
    Ok(Json(json!(s.0.store.user_quota(realm, &name).await?)))
}

pub(super) async fn put_user_quota(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RealmQuery>,
    bytes: Bytes,
) -> Reply {
    let realm = q.realm(&s);
    let actor = guard(&s, &caller, Some(realm))?;
    let b: QuotaBody = body(&bytes)?;
    let row = QuotaRow {
        allocations: b.allocations,
        bps: b.bps,
    };
    s.0.store.set_user_quota(&actor, realm, &name, &row).await?;
    Ok(Json(json!(row)))
}

pub(super) async fn get_realm_quota(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(realm): Path<String>,
) -> Reply {
    guard(&s, &caller, Some(&realm))?;
    Ok(Json(json!(s.0.store.realm_quota_row(&realm).await?)))
}

pub(super) async fn put_realm_quota(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> Reply {
    let actor = guard(&s, &caller, Some(&realm))?;
    let b: QuotaBody = body(&bytes)?;
    let row = QuotaRow {
        allocations: b.allocations,
        bps: b.bps,
    };
    s.0.store.set_realm_quota(&actor, &realm, &row).await?;
    Ok(Json(json!(row)))
}
