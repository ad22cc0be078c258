//! `/api/v1/usage`: usage records summed up (issue 18). The parameters
//! and the answer's shape are `usage::query`'s, shared with `turnpike
//! usage`.
//!
//! A realm token sees its realm only: without `realm` the filter is its
//! own realm, and another realm is 403 as on every realm-scoped route.

use axum::extract::State as Extract;
use axum::Json;

use super::{Query, Reply};
use crate::admin::auth::may;
use crate::admin::token::Scope;
use crate::admin::{ApiError, Caller, State};
use crate::usage::query::{answer_json, UsageParams};

pub(super) async fn usage(
    Extract(s): Extract<State>,
    caller: Caller,
    Query(mut p): Query<UsageParams>,
) -> Reply {
    let (sub, scope) = s.0.authorize(&caller)?;
    match (&scope, &p.realm) {
        (Scope::Realm(own), None) => p.realm = Some(own.clone()),
        (_, Some(realm)) => {
            may(&sub, &scope, Some(realm))?;
        }
        (Scope::Admin, None) => {}
    }
    let q = p
        .resolve(crate::store::unix_now_ms())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let page = s.0.store.usage(&q).await?;
    Ok(Json(answer_json(&q, &page)))
}
