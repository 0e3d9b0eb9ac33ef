//! Issue #10 on the router: the E-stop port, JSON for every error, content type, duplicate keys,
//! `GET /api/v1/audit`, `/metrics`, site mode, devices view before the first cycle.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ems_api::model::{DevicesView, SiteView};
use ems_api::ports::Outcome;
use http_body_util::BodyExt;
use rest_support::*;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn raw_request(h: &Harness, req: Request<Body>) -> (StatusCode, String, Value) {
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype =
        resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn estop_answers_state_and_took_ms_and_is_audited() {
    let h = harness();
    let r = h.post("/api/v1/emergency-stop", Some(OPERATOR), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["state"], "STOPPED");
    assert!(r.json["tookMs"].as_f64().unwrap() >= 0.0);
    let e = h.audit().into_iter().find(|e| e.action == "POST /api/v1/emergency-stop").unwrap();
    assert_eq!(e.outcome, Outcome::Ok);
    // Any body and content type: a stop must not fail on its body.
    let req = Request::post("/api/v1/emergency-stop")
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "text/plain")
        .body(Body::from("stop!"))
        .unwrap();
    assert_eq!(raw_request(&h, req).await.0, StatusCode::OK);
    // The loop gone: 503, not a hang.
    let h = harness_with(ems_api::auth::RateLimit::default(), false);
    let r = h.post("/api/v1/emergency-stop", Some(ADMIN), &json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn every_error_is_json() {
    let h = harness();
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            Request::get(format!("/api/v1/safety?x={}", "a".repeat(9000))).body(Body::empty()).unwrap(),
            StatusCode::URI_TOO_LONG,
        ),
        (
            {
                let mut b = Request::get("/api/v1/safety");
                for i in 0..70 {
                    b = b.header(format!("x-h{i}"), "v");
                }
                b.body(Body::empty()).unwrap()
            },
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            Request::get("/api/v1/safety").header("x-big", "v".repeat(17_000)).body(Body::empty()).unwrap(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (Request::put("/api/v1/safety").body(Body::empty()).unwrap(), StatusCode::METHOD_NOT_ALLOWED),
        (Request::get("/nope").body(Body::empty()).unwrap(), StatusCode::NOT_FOUND),
        (
            Request::post("/api/v1/reset")
                .header("authorization", format!("Bearer {OPERATOR}"))
                .body(Body::from("{\"reason\": \"x\"}"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Request::post("/api/v1/reset")
                .header("authorization", format!("Bearer {OPERATOR}"))
                .header("content-type", "application/json")
                .body(Body::from(vec![b' '; 70_000]))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Request::get("/api/v1/schedules/%FF%FE")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (req, want) in cases {
        let what = format!("{} {}", req.method(), req.uri().path());
        let (status, ctype, body) = raw_request(&h, req).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(ctype.starts_with("application/json"), "{what}: {ctype}");
        assert!(body["error"].is_string(), "{what}: {body}");
    }
    // `application/json; charset=utf-8` is JSON too.
    let req = Request::post("/api/v1/state")
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(Body::from("{\"request\": \"start\"}"))
        .unwrap();
    assert_eq!(raw_request(&h, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn duplicate_keys_are_refused_naming_the_key() {
    let h = harness();
    let r = h
        .raw(
            Method::POST,
            "/api/v1/control-modes",
            Some(OPERATOR),
            br#"{"ess": {"mode": "FORCE_CHARGE", "power": 0, "power": 5000}}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["field"], "power");
    assert!(r.json["error"].as_str().unwrap().contains("duplicate"));
    let r = h
        .raw(
            Method::POST,
            "/api/v1/state",
            Some(OPERATOR),
            br#"{"request": "stop", "request": "start"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["field"], "request");
}

#[tokio::test]
async fn audit_log_pages_and_filters() {
    let h = harness();
    for i in 0..5 {
        h.post("/api/v1/reset", Some(OPERATOR), &json!({"reason": format!("r{i}")})).await;
        h.clock.advance(60);
    }
    h.post("/api/v1/emergency-stop", Some(ADMIN), &json!({})).await;
    let r = h.get("/api/v1/audit?limit=2", Some(OPERATOR)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let entries = r.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "POST /api/v1/emergency-stop");
    for k in ["seq", "at", "actor", "action", "outcome", "detail"] {
        assert!(!entries[0][k].is_null(), "{k}");
    }
    let next = r.json["next"].as_u64().unwrap();
    let r2 = h.get(&format!("/api/v1/audit?limit=2&before={next}"), Some(OPERATOR)).await;
    assert!(r2.json["entries"][0]["seq"].as_u64().unwrap() < next);
    // Filters: outcome, action prefix, actor prefix, time window.
    let refused = h.get("/api/v1/audit?kind=refused", Some(ADMIN)).await;
    assert!(refused.json["entries"].as_array().unwrap().iter().all(|e| e["outcome"] == "refused"));
    assert_eq!(refused.json["next"], Value::Null);
    let resets = h.get("/api/v1/audit?kind=POST%20/api/v1/reset", Some(ADMIN)).await;
    assert_eq!(resets.json["entries"].as_array().unwrap().len(), 5);
    let ops = h.get("/api/v1/audit?actor=root", Some(ADMIN)).await;
    assert!(ops.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"].as_str().unwrap().starts_with("root")));
    let window = h
        .get(
            "/api/v1/audit?from=2026-05-01T12:01:00Z&to=2026-05-01T12:03:00Z&kind=POST%20/api/v1/reset",
            Some(ADMIN),
        )
        .await;
    assert_eq!(window.json["entries"].as_array().unwrap().len(), 2, "{}", window.json);
    // Refusals name the parameter; viewers may not read the audit log.
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("before=x", "before"),
        ("from=yesterday", "from"),
        ("nope=1", "nope"),
    ] {
        let r = h.get(&format!("/api/v1/audit?{q}"), Some(ADMIN)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.json["field"], field, "{q}");
    }
    assert_eq!(h.get("/api/v1/audit", Some(VIEWER)).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn metrics_need_a_viewer_and_count_answers() {
    let h = harness();
    assert_eq!(h.get("/metrics", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.get("/metrics", Some(PROVIDER)).await.status, StatusCode::FORBIDDEN);
    let r = h.get("/metrics", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.json.as_str().unwrap();
    assert!(text.contains("ems_api_requests_total{code=\"401\"} 1"), "{text}");
    assert!(text.contains("ems_api_unauthenticated_total 1"), "{text}");
    assert!(text.contains("# TYPE ems_cycle_lateness_seconds histogram"));
}

#[tokio::test]
async fn site_mode_round_trip_and_refusals() {
    let h = harness();
    let r = h.get("/api/v1/site-mode", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["mode"], "");
    let r = h
        .post(
            "/api/v1/site-mode",
            Some(OPERATOR),
            &json!({"mode": "self-consumption", "reserve_soc_pct": 20}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["mode"].as_str().unwrap().starts_with("self-consumption"));
    assert_eq!(r.json["state"], "IDLE");
    assert!(
        h.audit()
            .iter()
            .any(|e| e.action.starts_with("POST /api/v1/site-mode self-consumption")
                && e.outcome == Outcome::Ok)
    );
    for (body, field) in [
        (json!({"mode": "turbo"}), "mode"),
        (json!({"mode": "manual"}), "setpoint_w"),
        (json!({"mode": "passive", "reserve_soc_pct": 5}), "reserve_soc_pct"),
        (
            json!({"mode": "peak-shaving", "import_cap_w": 1000, "reserve_soc_pct": 95, "target_soc_pct": 50}),
            "mode",
        ),
    ] {
        let r = h.post("/api/v1/site-mode", Some(OPERATOR), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json["field"], field, "{body}: {}", r.json);
    }
    assert_eq!(
        h.post("/api/v1/site-mode", Some(VIEWER), &json!({"mode": "passive"})).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn safety_before_the_first_cycle_and_devices_waiting() {
    let h = harness();
    let r = h.get("/api/v1/safety", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["timestamp"], Value::Null);
    assert_eq!(r.json["devices"]["ready"], false);
    h.view.send_replace(SiteView {
        devices: DevicesView { ready: false, detail: "battery: no answer since start-up".into() },
        ..SiteView::default()
    });
    let r = h.get("/api/v1/safety", Some(VIEWER)).await;
    assert_eq!(r.json["devices"]["detail"], "battery: no answer since start-up");
    assert_eq!(h.get("/api/v1/current-data", Some(VIEWER)).await.status, StatusCode::OK);
}
