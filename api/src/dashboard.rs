//! The operator page: `GET /` (HTML), `GET /app.js`, `GET /style.css`, embedded in the binary
//! (`api/static/`, plain HTML/CSS/JS: no build step, nothing loaded from elsewhere).
//!
//! The page itself needs no token; it asks for one (kept in `sessionStorage`) and sends it with
//! every API call (`Authorization: Bearer`, and as the first WebSocket message on
//! `/api/v1/live`). Every response carries a strict `Content-Security-Policy` (only this origin;
//! no inline scripts or styles; no framing) plus `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-cache`.
//!
//! The WebSocket of the same host is allowed explicitly in `connect-src` (`ws://host` and
//! `wss://host`, from the request's `Host` header when it is a plain host name or address) for
//! browsers whose `'self'` does not yet cover `ws:`.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The page.
pub const INDEX_HTML: &str = include_str!("../static/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("../static/app.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("../static/style.css");

/// The policy without the same-host WebSocket sources.
pub const CSP_BASE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The `Content-Security-Policy` for a request with this `Host` header.
#[must_use]
pub fn csp(host: Option<&str>) -> String {
    let host = host.filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    });
    match host {
        Some(h) => format!("{CSP_BASE}; connect-src 'self' ws://{h} wss://{h}"),
        None => format!("{CSP_BASE}; connect-src 'self'"),
    }
}

fn asset(headers: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = resp.headers_mut();
    let policy = HeaderValue::from_str(&csp(host))
        .or_else(|_| HeaderValue::from_str(&csp(None)))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    h.insert(header::CONTENT_SECURITY_POLICY, policy);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /`.
pub async fn index(headers: HeaderMap) -> Response {
    asset(&headers, "text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /app.js`.
pub async fn app_js(headers: HeaderMap) -> Response {
    asset(&headers, "text/javascript; charset=utf-8", APP_JS)
}

/// `GET /style.css`.
pub async fn style_css(headers: HeaderMap) -> Response {
    asset(&headers, "text/css; charset=utf-8", STYLE_CSS)
}
