//! The web console (issue 20): static files compiled into the binary and
//! served at `/console/` on the admin listener. They hold no data, so they
//! need no token; every call the page makes to `/api/v1` carries the one
//! the operator signed in with.
//!
//! Every answer carries a Content-Security-Policy without `unsafe-inline`
//! (scripts and styles only from the files below, requests only to this
//! origin), `nosniff`, and no referrer, so neither an injected string nor
//! a third party can read the token.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::routes::Path;
use super::ApiError;

pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("console/index.html")),
    ("style.css", CSS, include_bytes!("console/style.css")),
    ("app.js", JS, include_bytes!("console/app.js")),
    ("api.js", JS, include_bytes!("console/api.js")),
    ("ui.js", JS, include_bytes!("console/ui.js")),
    ("overview.js", JS, include_bytes!("console/overview.js")),
    ("sessions.js", JS, include_bytes!("console/sessions.js")),
    ("manage.js", JS, include_bytes!("console/manage.js")),
    ("usage.js", JS, include_bytes!("console/usage.js")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// `/console`: the page lives at `/console/` so that its relative links
/// resolve inside it.
pub(super) async fn redirect() -> Response {
    let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/console/"));
    secure(&mut r);
    r
}

pub(super) async fn index() -> Response {
    file("index.html")
}

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    file(&name)
}

fn file(name: &str) -> Response {
    let Some((_, kind, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found("no such console file").into_response();
    };
    let mut r = ([(header::CONTENT_TYPE, *kind)], *bytes).into_response();
    // A new binary may bring new files: the browser asks again each time
    // (they are small and come from the same host).
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(&mut r);
    r
}

/// The headers of every page the server serves (the console and the
/// self-test page): the policy above, `nosniff`, no referrer, no framing.
pub(crate) fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_type_and_the_policy_allows_no_inline_code() {
        assert!(!CSP.contains("unsafe"));
        for (name, kind, bytes) in FILES {
            assert!(!bytes.is_empty(), "{name}");
            let ext = name.rsplit('.').next().unwrap();
            let want = match ext {
                "html" => HTML,
                "css" => CSS,
                _ => JS,
            };
            assert_eq!(*kind, want, "{name}");
        }
        // No inline script or style attribute in the page: CSP would block
        // them and log a violation.
        let html = std::str::from_utf8(FILES[0].2).unwrap();
        assert!(!html.contains("style=\""), "inline style in index.html");
        assert!(!html.contains("<script>"), "inline script in index.html");
        assert!(!html.contains("<style"), "inline style sheet in index.html");
    }
}
