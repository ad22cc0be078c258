//! The admin REST API and `/metrics` (axum), on loopback by default.
//!
//! Every route but the health endpoints (`/livez`, `/readyz`, `/healthz`,
//! also served alone on `health_listen`), the OpenAPI document and the web
//! console's static files ([`console`], `/console/`) needs a bearer token
//! ([`token`]); answers and errors are JSON. Five different bad tokens
//! from one address within 30 s lock its bad tokens out for 30 s (429); a
//! valid token is always served ([`Lockout`]). No route returns or logs a
//! password, secret or key: they go in, only names and ids come out.
//!
//! The live server (sessions, counters, certificate reload, listeners) is
//! reached only through the [`Control`] handle the shell gives [`State`].

#![warn(unreachable_pub, missing_debug_implementations)]

mod auth;
mod console;
mod control;
mod error;
mod https;
pub(crate) mod listener;
mod lockout;
mod metrics;
mod routes;
mod stats;
pub mod token;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

use crate::auth::rest::Secret;
use crate::config::Config;
use crate::store::{Store, StoreError};
use lockout::Lockout;

pub(crate) use console::secure as secure_page;
#[cfg(test)]
pub(crate) use console::CSP;
pub(crate) use control::{Answer, Control, DrainView, Probe, Readiness, ReloadReport};
pub(crate) use error::ApiError;
pub(crate) use routes::serve_health;

/// Everything the handlers reach.
#[derive(Clone)]
pub(crate) struct State(Arc<Inner>);

pub(crate) struct Inner {
    store: Store,
    /// The live server: sessions, counters, reload, listeners.
    control: Arc<dyn Control>,
    config: Arc<Config>,
    jwt_secret: Secret,
    failures: Mutex<Lockout>,
    /// The last 15 minutes of counters, for `/api/v1/stats`.
    history: Arc<Mutex<stats::History>>,
}

impl State {
    pub(crate) async fn new(
        store: Store,
        control: Arc<dyn Control>,
        config: Arc<Config>,
    ) -> Result<State, StoreError> {
        let jwt_secret = match &config.admin_jwt_secret {
            Some(s) => s.clone(),
            None => store.admin_jwt_secret().await?,
        };
        Ok(State(Arc::new(Inner {
            store,
            control,
            config,
            jwt_secret,
            failures: Mutex::default(),
            history: Arc::default(),
        })))
    }
}

// By hand: the JWT secret and the store must never reach a log line.
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("jwt_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Binds `addr` and returns the bound address and the serving task, which
/// ends when `shutdown` completes. With `tls`, the listener speaks HTTPS.
/// `extra` routes (the self-test page) are served too, without a token.
pub(crate) async fn serve(
    addr: SocketAddr,
    state: State,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    extra: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, listener::Serving)> {
    let history = Arc::downgrade(&state.0.history);
    let control = state.0.control.clone();
    let app = routes::router(state).merge(extra);
    let served = listener::serve(addr, app, tls, "admin api", shutdown).await?;
    tokio::spawn(stats::sample(control, history));
    Ok(served)
}

/// The caller of a route: its address (for the lockout) and headers.
pub(crate) struct Caller {
    from: IpAddr,
    headers: HeaderMap,
}

// By hand: the headers carry the bearer token.
impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("from", &self.from)
            .field("headers", &"<redacted>")
            .finish()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let from = parts
            .extensions
            .get::<axum::extract::ConnectInfo<listener::ClientAddr>>()
            .map(|c| c.0 .0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Caller {
            from,
            headers: std::mem::take(&mut parts.headers),
        })
    }
}
