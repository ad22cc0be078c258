//! The health endpoints balancers and orchestrators poll, without a token:
//! `/livez` (and its old name `/healthz`) and `/readyz`. They are served on
//! the admin listener and, alone, on `health_listen` ([`serve_health`]),
//! which comes up before the rest of the server so that `/readyz` can say
//! "starting".

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::admin::{ApiError, Probe, Readiness, State};

/// 200 while the process serves (the listener answering is the proof).
pub(super) async fn livez() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when this node takes new allocations, else 503 with the reason.
pub(super) async fn readyz(Extract(s): Extract<State>) -> Response {
    readiness(s.0.control.readiness())
}

fn readiness(r: Readiness) -> Response {
    match r {
        Readiness::Ready => Json(json!({"status": "ready"})).into_response(),
        Readiness::NotReady(reason, detail) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unready", "reason": reason, "detail": detail})),
        )
            .into_response(),
    }
}

/// The health listener's routes: these three and nothing else.
fn router(probe: Arc<dyn Probe>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/healthz", get(livez))
        .route(
            "/readyz",
            get(|Extract(p): Extract<Arc<dyn Probe>>| async move { readiness(p.readiness()) }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(probe)
}

/// Binds `addr` for the health endpoints alone; returns the bound address
/// and the serving task, which ends when `shutdown` completes. Balancers
/// probe it from anywhere: bounded as the admin API is.
pub(crate) async fn serve_health(
    addr: SocketAddr,
    probe: Arc<dyn Probe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, crate::admin::listener::Serving)> {
    crate::admin::listener::serve(addr, router(probe), None, "health listener", shutdown).await
}
