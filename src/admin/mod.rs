//! The admin REST API and `/metrics` (axum), on loopback by default.
//!
//! Every route but `/healthz` and the OpenAPI document needs a bearer token
//! ([`token`]); answers and errors are JSON. Five different bad tokens
//! from one address within 30 s lock its bad tokens out for 30 s (429); a
//! valid token is always served ([`Lockout`]). No route returns or logs a
//! password, secret or key: they go in, only names and ids come out.

mod lockout;
mod metrics;
mod routes;
pub mod token;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::watch;

use crate::auth::rest::Secret;
use crate::config::Config;
use crate::net::control::Registry;
use crate::net::Transport;
use crate::store::{Store, StoreError};
use crate::turn::Shared;
use lockout::Lockout;
use token::Scope;

/// Everything the handlers reach.
#[derive(Clone)]
pub struct State(Arc<Inner>);

pub struct Inner {
    store: Store,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    config: Arc<Config>,
    listeners: Vec<(Transport, SocketAddr)>,
    tls: Option<Arc<crate::net::tls::Tls>>,
    jwt_secret: Secret,
    failures: Mutex<Lockout>,
}

impl State {
    pub async fn new(
        store: Store,
        shared: Arc<Shared>,
        registry: Arc<Registry>,
        config: Arc<Config>,
        listeners: Vec<(Transport, SocketAddr)>,
        tls: Option<Arc<crate::net::tls::Tls>>,
    ) -> Result<State, StoreError> {
        let jwt_secret = match &config.admin_jwt_secret {
            Some(s) => s.clone(),
            None => store.admin_jwt_secret().await?,
        };
        Ok(State(Arc::new(Inner {
            store,
            shared,
            registry,
            config,
            listeners,
            tls,
            jwt_secret,
            failures: Mutex::default(),
        })))
    }
}

/// Binds `addr` and returns the bound address and the serving task, which
/// ends when `stop` is set.
pub async fn serve(
    addr: SocketAddr,
    state: State,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = async move {
        let shutdown = async move { crate::net::stopped(&mut stop).await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!("admin api stopped: {e}");
        }
    };
    Ok((bound, task))
}

/// An error answer: status and a one-line JSON `{"error": ...}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
    pub fn forbidden() -> Self {
        ApiError(
            StatusCode::FORBIDDEN,
            "token scope does not cover this realm".into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.1, "status": self.0.as_u16()});
        (self.0, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists { .. } => ApiError(StatusCode::CONFLICT, e.to_string()),
            StoreError::NotFound { .. } => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Invalid { .. } => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            _ => {
                tracing::warn!("admin api: {e}");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
            }
        }
    }
}

/// The caller of a route: its address (for the lockout) and headers.
pub struct Caller {
    from: IpAddr,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let from = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Caller {
            from,
            headers: std::mem::take(&mut parts.headers),
        })
    }
}

impl Inner {
    /// Checks the bearer token; returns who it names and its scope.
    ///
    /// A valid token is served even from a locked-out address: the lockout
    /// must not let a stranger sharing the admin's IP shut the admin out.
    /// A missing token is a plain 401 and does not count (it guesses
    /// nothing, and a browser page can send one cross-origin).
    fn authorize(&self, caller: &Caller) -> Result<(String, Scope), ApiError> {
        let token = caller
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(unauthorized());
        };
        // The signature check inside is a constant-time HMAC comparison.
        if let Ok((claims, scope)) = token::verify(&self.jwt_secret.0, token) {
            return Ok((claims.sub, scope));
        }
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.bad_token(caller.from, token, Instant::now()) {
            Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                "too many bad tokens from this address; try again in 30 s".into(),
            ))
        } else {
            Err(unauthorized())
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "missing, invalid or expired bearer token".into(),
    )
}
