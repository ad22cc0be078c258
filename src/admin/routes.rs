//! The admin API's routes. Bodies are parsed by hand so that a bad body
//! also gets a JSON error.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State as Extract};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::token::Scope;
use super::{metrics, ApiError, Caller, State};
use crate::auth::rest;
use crate::net::Transport;
use crate::store::QuotaRow;

type Reply = Result<Json<Value>, ApiError>;

/// axum's `Path` and `Query`, with a JSON 400 for a bad path or query
/// string (axum answers those in plain text, which the document does not
/// promise).
struct Path<T>(T);
struct Query<T>(T);

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

const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
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
        .route("/api/v1/credentials", post(credentials))
        .route("/api/v1/reload", post(reload))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// Who is calling, checked against the realm acted on (`None`: admin only).
pub(super) fn guard(s: &State, caller: &Caller, realm: Option<&str>) -> Result<String, ApiError> {
    let (sub, scope) = s.0.authorize(caller)?;
    may(&sub, &scope, realm)
}

/// The audit actor for `sub`, if `scope` covers `realm` (`None`: admin
/// only). For routes that learn the realm from the body, after the token
/// was checked.
fn may(sub: &str, scope: &Scope, realm: Option<&str>) -> Result<String, ApiError> {
    let allowed = match realm {
        Some(r) => scope.covers(r),
        None => *scope == Scope::Admin,
    };
    if !allowed {
        return Err(ApiError::forbidden());
    }
    Ok(format!("api:{sub}"))
}

/// A JSON object body. serde would also fill a struct from an array
/// (`[null, null]`), which the document does not allow.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
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
struct RealmQuery {
    realm: Option<String>,
}

impl RealmQuery {
    fn realm<'a>(&'a self, s: &'a State) -> &'a str {
        self.realm.as_deref().unwrap_or(&s.0.config.realm)
    }
}

// ----- users ------------------------------------------------------------

async fn list_users(
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

async fn add_user(
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

async fn get_user(
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

async fn patch_user(
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

async fn remove_user(
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

// ----- REST secrets and OAuth keys -----------------------------------------

async fn list_secrets(
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

async fn add_secret(
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

async fn remove_secret(
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

async fn list_keys(Extract(s): Extract<State>, caller: Caller) -> Reply {
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

async fn add_key(
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

async fn remove_key(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = guard(&s, &caller, None)?;
    s.0.store.remove_oauth_key(&actor, &kid).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- quotas -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    allocations: Option<i64>,
    bps: Option<i64>,
}

async fn get_user_quota(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RealmQuery>,
) -> Reply {
    let realm = q.realm(&s);
    guard(&s, &caller, Some(realm))?;
    Ok(Json(json!(s.0.store.user_quota(realm, &name).await?)))
}

async fn put_user_quota(
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

async fn get_realm_quota(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(realm): Path<String>,
) -> Reply {
    guard(&s, &caller, Some(&realm))?;
    Ok(Json(json!(s.0.store.realm_quota_row(&realm).await?)))
}

async fn put_realm_quota(
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

// ----- sessions -----------------------------------------------------------

async fn list_sessions(Extract(s): Extract<State>, caller: Caller) -> Reply {
    guard(&s, &caller, None)?;
    let now = Instant::now();
    let sessions: Vec<Value> =
        s.0.registry
            .sessions()
            .into_iter()
            .map(|(id, v)| {
                json!({
                    "id": id,
                    "user": v.username,
                    "transport": v.tuple.transport.to_string(),
                    "client": v.tuple.client.to_string(),
                    "server": v.tuple.server.to_string(),
                    "relayed": v.relayed.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "age_seconds": now.saturating_duration_since(v.created).as_secs(),
                    "to_peer": {"packets": v.to_peer.packets, "bytes": v.to_peer.bytes},
                    "to_client": {"packets": v.to_client.packets, "bytes": v.to_client.bytes},
                })
            })
            .collect();
    Ok(Json(json!({"sessions": sessions})))
}

async fn end_session(
    Extract(s): Extract<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    guard(&s, &caller, None)?;
    if s.0.registry.end(&id).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such live session"))
    }
}

/// Reads the TLS certificate and key again. A bad file keeps the old pair
/// and answers 422 with the reason (which names the file, never its bytes).
async fn reload(Extract(s): Extract<State>, caller: Caller) -> Reply {
    let actor = guard(&s, &caller, None)?;
    let Some(tls) = &s.0.tls else {
        return Ok(Json(json!({"tls": "not configured"})));
    };
    match tls.reload() {
        Ok(()) => {
            tracing::info!("{actor}: TLS certificate reloaded");
            Ok(Json(json!({"tls": "reloaded"})))
        }
        Err(e) => {
            tracing::warn!("{actor}: TLS reload failed, keeping the old certificate: {e}");
            Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("kept the old certificate: {e}"),
            ))
        }
    }
}

// ----- credentials for WebRTC backends ----------------------------------------

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

async fn credentials(Extract(s): Extract<State>, caller: Caller, bytes: Bytes) -> Reply {
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
    let urls = ice_urls(&s);
    Ok(Json(json!({
        "username": username,
        "password": password,
        "ttl": r.ttl,
        "uris": urls,
        "iceServers": [{"urls": urls, "username": username, "credential": password}],
    })))
}

/// `turn:` (and `stun:`) URLs for every listener, with the address clients
/// should use: the external one if configured, else the listener's, else
/// the relay address of its family.
fn ice_urls(s: &State) -> Vec<String> {
    let cfg = &s.0.shared.config;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (transport, addr) in &s.0.listeners {
        let v4 = addr.is_ipv4();
        let relay = cfg.relay_ip(v4);
        let host: Option<IpAddr> = cfg
            .external_ips
            .iter()
            .find(|(_, public)| public.is_ipv4() == v4)
            .map(|(_, public)| *public)
            .or_else(|| (!addr.ip().is_unspecified()).then(|| addr.ip()))
            .or(relay);
        let Some(host) = host else { continue };
        let hp = SocketAddr::new(host, addr.port()).to_string();
        match transport {
            Transport::Udp | Transport::Tcp => {
                if seen.insert(format!("stun:{hp}")) {
                    out.push(format!("stun:{hp}"));
                }
                out.push(format!("turn:{hp}?transport={transport}"));
            }
            Transport::Tls => out.push(format!("turns:{hp}?transport=tcp")),
            // RFC 7065 spells DTLS `turns:...?transport=udp`, but browsers
            // do not speak it, and one URL they reject spoils the list.
            Transport::Dtls => {}
        }
    }
    out
}
