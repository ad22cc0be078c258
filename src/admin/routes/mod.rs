//! The admin API's routes, one file per resource; this one holds the
//! router and what they share. Bodies are parsed by hand so that a bad
//! body also gets a JSON error.

mod acme;
mod credentials;
mod drain;
mod health;
mod nodes;
mod oauth_keys;
mod quotas;
mod reload;
mod revocations;
mod secrets;
mod select;
mod sessions;
mod usage;
mod users;
mod whoami;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{metrics, stats, ApiError, State};
use credentials::credentials;
pub(crate) use health::serve_health;
use oauth_keys::{add_key, list_keys, remove_key};
use quotas::{get_realm_quota, get_user_quota, put_realm_quota, put_user_quota};
use reload::reload;
use secrets::{add_secret, list_secrets, remove_secret};
use sessions::{end_session, list_sessions};
use users::{add_user, get_user, list_users, patch_user, remove_user};

pub(super) type Reply = Result<Json<Value>, ApiError>;

/// axum's `Path` and `Query`, with a JSON 400 for a bad path or query
/// string (axum answers those in plain text, which the document does not
/// promise).
pub(super) struct Path<T>(T);
pub(super) struct Query<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

const OPENAPI: &str = include_str!("../openapi.json");

pub(super) fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(health::livez))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route(
            "/api/v1/drain",
            get(drain::get_drain)
                .post(drain::start_drain)
                .delete(drain::end_drain),
        )
        .route("/api/v1/nodes", get(nodes::list_nodes))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/stats", get(stats::stats))
        .route("/api/v1/whoami", get(whoami::whoami))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route(
            "/api/v1/users/{name}",
            get(get_user).patch(patch_user).delete(remove_user),
        )
        .route("/api/v1/secrets", get(list_secrets).post(add_secret))
        .route("/api/v1/secrets/{id}", delete(remove_secret))
        .route("/api/v1/oauth-keys", get(list_keys).post(add_key))
        .route("/api/v1/oauth-keys/{kid}", delete(remove_key))
        .route(
            "/api/v1/quotas/users/{name}",
            get(get_user_quota).put(put_user_quota),
        )
        .route(
            "/api/v1/quotas/realms/{realm}",
            get(get_realm_quota).put(put_realm_quota),
        )
        .route("/api/v1/sessions", get(list_sessions))
        .route("/api/v1/sessions/{id}", delete(end_session))
        .route("/api/v1/usage", get(usage::usage))
        .route("/api/v1/credentials", post(credentials))
        .route("/api/v1/credentials/revoke", post(revocations::revoke))
        .route(
            "/api/v1/credentials/revocations",
            get(revocations::list_revocations),
        )
        .route(
            "/api/v1/credentials/revocations/{name}",
            delete(revocations::remove_revocation),
        )
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/acme/renew", post(acme::renew))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// A JSON object body. serde would also fill a struct from an array
/// (`[null, null]`), which the document does not allow.
pub(super) fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bad = |e: serde_json::Error| ApiError::bad_request(format!("invalid JSON body: {e}"));
    let v: Value = serde_json::from_slice(bytes).map_err(bad)?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON body: expected an object",
        ));
    }
    serde_json::from_value(v).map_err(bad)
}

#[derive(Deserialize)]
pub(super) struct RealmQuery {
    realm: Option<String>,
}

impl RealmQuery {
    pub(super) fn realm<'a>(&'a self, s: &'a State) -> &'a str {
        self.realm.as_deref().unwrap_or(&s.0.config.realm)
    }
}
