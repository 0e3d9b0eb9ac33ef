//! The operator page (`/`, `/app.js`, `/style.css`): served without a token, right content
//! types, strict CSP, stable element ids, and the script only calls documented endpoints.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use ems_api::dashboard::{csp, APP_JS, INDEX_HTML, STYLE_CSS};
use ems_api::rest::ROUTES;
use http_body_util::BodyExt;
use rest_support::*;
use tower::ServiceExt;

async fn fetch(h: &Harness, path: &str, host: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(host) = host {
        req = req.header(header::HOST, host);
    }
    let resp = h.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers.get(&name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

#[tokio::test]
async fn page_and_assets_are_served_with_content_type_and_csp() {
    let h = harness();
    for (path, ctype, body) in [
        ("/", "text/html; charset=utf-8", INDEX_HTML),
        ("/app.js", "text/javascript; charset=utf-8", APP_JS),
        ("/style.css", "text/css; charset=utf-8", STYLE_CSS),
    ] {
        let (status, headers, text) = fetch(&h, path, Some("ems.local:8080")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, header::CONTENT_TYPE), ctype, "{path}");
        assert_eq!(text, body, "{path}");
        let policy = header(&headers, header::CONTENT_SECURITY_POLICY);
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(policy.ends_with("connect-src 'self' ws://ems.local:8080 wss://ems.local:8080"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(header(&headers, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
    // Without a Host header (or with a strange one) only 'self'.
    let (_, headers, _) = fetch(&h, "/", None).await;
    assert!(header(&headers, header::CONTENT_SECURITY_POLICY).ends_with("connect-src 'self'"));
    assert!(csp(Some("evil.example; script-src *")).ends_with("connect-src 'self'"));
    assert!(csp(Some("[::1]:8080")).ends_with("ws://[::1]:8080 wss://[::1]:8080"));
}

#[tokio::test]
async fn page_has_the_stable_ids_and_loads_only_local_assets() {
    for id in [
        "token",
        "state",
        "soc",
        "estop",
        "estop-confirm",
        "estop-cancel",
        "recovery",
        "reset-reason",
        "reset",
        "start",
        "grid",
        "pv",
        "battery",
        "load",
        "faults",
        "events",
        "control-modes",
        "chart",
        "devices-banner",
        "devices-detail",
        "site-mode",
    ] {
        let attr = format!("id=\"{id}\"");
        assert_eq!(INDEX_HTML.matches(&attr).count(), 1, "exactly one element with {attr}");
        assert!(APP_JS.contains(&format!("'{id}'")), "app.js uses #{id}");
    }
    assert!(INDEX_HTML.contains("id=\"login\""));
    assert!(INDEX_HTML.contains("<script src=\"/app.js\""));
    assert!(INDEX_HTML.contains("href=\"/style.css\""));
    for (name, text) in [("index.html", INDEX_HTML), ("app.js", APP_JS), ("style.css", STYLE_CSS)] {
        assert!(!text.contains("http://") && !text.contains("https://"), "{name} refers to another site");
        assert!(!text.contains("style=\""), "{name}: inline styles are blocked by the CSP");
        assert!(!text.contains("onclick"), "{name}: inline handlers are blocked by the CSP");
        assert!(!text.contains("innerHTML"), "{name}: use textContent");
    }
    assert_eq!(INDEX_HTML.matches("<script").count(), 1, "no inline scripts");
    assert!(APP_JS.contains("sessionStorage"));
}

/// Every `/api/v1/...` path in the script.
fn api_paths(js: &str) -> Vec<String> {
    js.match_indices("/api/v1/")
        .map(|(i, _)| {
            js[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '{' | '}'))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_script_calls_only_documented_endpoints() {
    let paths = api_paths(APP_JS);
    for expected in [
        "/api/v1/live",
        "/api/v1/current-data",
        "/api/v1/safety",
        "/api/v1/emergency-stop",
        "/api/v1/reset",
        "/api/v1/state",
        "/api/v1/control-modes",
        "/api/v1/history",
    ] {
        assert!(paths.iter().any(|p| p == expected), "app.js does not use {expected}: {paths:?}");
    }
    for p in &paths {
        assert!(ROUTES.iter().any(|r| r.path == p), "app.js calls {p}, which is not in ROUTES");
    }
    // And they are served (not 404) by the router; an economics, grid-services or island
    // endpoint on this site without them answers its own 404 ("not configured"), which the page handles.
    let h = harness();
    for p in &paths {
        let r = h.get(p, Some(VIEWER)).await;
        let not_configured = r.json["error"] == ems_api::economics::NOT_CONFIGURED
            || r.json["error"] == ems_api::grid_services::NOT_CONFIGURED
            || r.json["error"] == ems_api::island::NOT_CONFIGURED;
        assert!(r.status != StatusCode::NOT_FOUND || not_configured, "{p}: {}", r.json);
    }
}

#[tokio::test]
async fn the_page_needs_no_token_but_the_api_does() {
    let h = harness();
    let (status, _, html) = fetch(&h, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("EMERGENCY STOP"));
    assert_eq!(h.get("/api/v1/safety", None).await.status, StatusCode::UNAUTHORIZED);
    // Other methods on the page are refused as JSON.
    let r = h.post("/", None, &serde_json::json!({})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn the_page_says_when_it_waits_for_devices() {
    assert!(INDEX_HTML.contains("waiting for devices: <span id=\"devices-detail\">"));
    assert!(APP_JS.contains("d.ready"));
}
