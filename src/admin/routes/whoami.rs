//! `/api/v1/whoami`: what the caller's token is, so that the console shows
//! a realm token only the pages it may use.

use axum::extract::State as Extract;
use axum::Json;
use serde_json::json;

use super::Reply;
use crate::admin::token::Scope;
use crate::admin::{Caller, State};

pub(super) async fn whoami(Extract(s): Extract<State>, caller: Caller) -> Reply {
    let (claims, scope) = s.0.claims(&caller)?;
    let realm = match &scope {
        Scope::Admin => None,
        Scope::Realm(r) => Some(r.clone()),
    };
    Ok(Json(json!({
        "subject": claims.sub,
        "scope": claims.scope,
        "realm": realm,
        "expires": claims.exp,
        "default_realm": s.0.config.realm,
        "node": s.0.config.node_name,
    })))
}
