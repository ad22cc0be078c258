//! The self-test page (issue 20): `GET /selftest`, its assets and
//! `POST /selftest/credentials`, served without a token on the admin
//! listener (`selftest = true`) and alone on `selftest_listen`, which may
//! be public.
//!
//! * the page (`page.html`, `selftest.js`, `selftest.css`) is compiled in;
//!   a Content-Security-Policy without 'unsafe-inline' lets it load its
//!   own script and style and talk to this origin only;
//! * a credential is a `selftest-` REST username valid 60 s, signed with a
//!   per-process secret the TURN core accepts for such names only (see
//!   `auth/rest.rs`), good for one allocation at a time;
//! * credentials are rate-limited per source and in total ([`limiter`]).

mod limiter;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::admin::listener::{serve as serve_bounded, ClientAddr, Serving};
use crate::admin::{ApiError, Control};
use crate::config::SelftestConfig;
use limiter::Limiter;

/// How long a self-test credential is valid, seconds.
pub(crate) const TTL: u64 = 60;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("selftest.js");
const STYLE: &str = include_str!("selftest.css");

/// What the routes share: the server (its URLs, the minting) and the
/// limiter, one for every listener the page is on.
pub(crate) struct Selftest {
    control: Arc<dyn Control>,
    limiter: Mutex<Limiter>,
}

impl std::fmt::Debug for Selftest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selftest").finish_non_exhaustive()
    }
}

impl Selftest {
    pub(crate) fn new(control: Arc<dyn Control>, config: &SelftestConfig) -> Arc<Self> {
        let limiter = Limiter::new(config.rate_per_ip, config.rate_total, Instant::now());
        Arc::new(Selftest {
            control,
            limiter: Mutex::new(limiter),
        })
    }
}

/// The page's routes, without a fallback: merged into the admin router,
/// or served alone by [`serve`].
pub(crate) fn routes(state: Arc<Selftest>) -> Router {
    Router::new()
        .route("/selftest", get(page))
        .route("/selftest/credentials", post(credentials))
        .route("/selftest/{asset}", get(asset))
        .with_state(state)
}

/// The same paths when the page is off (`selftest = false`): 404 for the
/// documented methods, as for any unknown route, and 405 for the others,
/// as the document's other routes answer.
pub(crate) fn routes_off() -> Router {
    let off = || async { ApiError::not_found("no such route (the self-test page is off)") };
    Router::new()
        .route("/selftest", get(off))
        .route("/selftest/credentials", post(off))
        .route("/selftest/{asset}", get(off))
}

/// Binds `addr` for the page alone (nothing of the admin API); returns the
/// bound address and the serving task, which ends when `shutdown` does.
/// It may face the Internet: bounded as the admin listener is.
pub(crate) async fn serve(
    addr: SocketAddr,
    state: Arc<Selftest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, Serving)> {
    let app = routes(state).fallback(|| async { ApiError::not_found("no such route") });
    serve_bounded(addr, app, None, "selftest listener", shutdown).await
}

/// `body` as `content_type` with the page's security headers.
fn secured(status: StatusCode, content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    crate::admin::secure_page(&mut r);
    r
}

async fn page() -> Response {
    let mut r = secured(StatusCode::OK, "text/html; charset=utf-8", PAGE);
    // A new build brings a new page: always asked again.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn asset(Path(name): Path<String>) -> Response {
    let (ctype, body) = match name.as_str() {
        "selftest.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "selftest.css" => ("text/css; charset=utf-8", STYLE),
        _ => return ApiError::not_found("no such route").into_response(),
    };
    let mut r = secured(StatusCode::OK, ctype, body);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Which transports the server's URLs offer, for the page's "not offered".
fn offered(urls: &[String]) -> serde_json::Value {
    let turn = |t: &str| {
        urls.iter()
            .any(|u| u.starts_with("turn:") && u.ends_with(&format!("?transport={t}")))
    };
    json!({
        "stun": urls.iter().any(|u| u.starts_with("stun:")),
        "turn_udp": turn("udp"),
        "turn_tcp": turn("tcp"),
        "turn_tls": urls.iter().any(|u| u.starts_with("turns:")),
    })
}

async fn credentials(
    State(s): State<Arc<Selftest>>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
) -> Response {
    let ip: IpAddr = from.ip();
    let taken = s
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(ip, Instant::now());
    if let Err(refusal) = taken {
        let body = json!({"error": refusal.message(), "status": 429});
        let mut r = secured(
            StatusCode::TOO_MANY_REQUESTS,
            "application/json",
            Json(body),
        );
        let h = r.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(refusal.retry_s()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    let Some((username, credential)) = s.control.selftest_credential(TTL) else {
        let body = json!({"error": "self-test credentials are not available", "status": 503});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    let urls = s.control.ice_urls();
    let body = json!({
        "username": username,
        "credential": credential,
        "ttl": TTL,
        "offered": offered(&urls),
        "urls": urls,
    });
    let mut r = secured(StatusCode::OK, "application/json", Json(body));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::CSP;

    #[test]
    fn offered_reads_the_transports_off_the_urls() {
        let urls: Vec<String> = [
            "stun:192.0.2.1:3478",
            "turn:192.0.2.1:3478?transport=udp",
            "turn:192.0.2.1:3478?transport=tcp",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            offered(&urls),
            json!({"stun": true, "turn_udp": true, "turn_tcp": true, "turn_tls": false})
        );
        let tls = vec!["turns:turn.example.com:5349?transport=tcp".to_string()];
        assert_eq!(
            offered(&tls),
            json!({"stun": false, "turn_udp": false, "turn_tcp": false, "turn_tls": true})
        );
    }

    #[test]
    fn the_policy_allows_nothing_inline_and_no_other_host() {
        assert!(!CSP.contains("unsafe"));
        for d in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CSP.contains(d), "{d}");
        }
        // The page carries no inline script or style to need it.
        assert!(!PAGE.contains("<script>") && !PAGE.contains("style="));
        assert!(!PAGE.contains("<style"));
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
