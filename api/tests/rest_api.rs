//! The REST router end to end (`tower::ServiceExt::oneshot`) against a fake control loop.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::http::{Method, StatusCode};
use ems_api::auth::RateLimit;
use ems_api::model::{ChannelValue, SafetyView, SiteView};
use ems_api::ports::{HistoryStore, Outcome};
use ems_api::rest::{openapi, ROUTES};
use ems_core::State;
use rest_support::*;
use serde_json::{json, Value};

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH];

fn concrete(path: &str) -> String {
    path.replace("{id}", "sch-doesnotexist")
}

#[tokio::test]
async fn openapi_lists_exactly_the_served_routes() {
    let h = harness();
    let doc = h.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.json["openapi"], "3.1.0");
    assert_eq!(doc.json, openapi());
    let paths = doc.json["paths"].as_object().unwrap();
    // Every documented path/method is served (not 404/405) ...
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    assert_eq!(documented.len(), ROUTES.len());
    // ... and every method that is served on a documented path is documented.
    for path in paths.keys() {
        for m in METHODS {
            let r = h.raw(m.clone(), &concrete(path), Some(ADMIN), b"{}".to_vec()).await;
            // A 404 of an item (`field: id`) or of economics on a site without it is an
            // answer of a served route; any other 404 is the router's "no such endpoint".
            let not_configured = r.json["error"] == ems_api::economics::NOT_CONFIGURED
                || r.json["error"] == ems_api::grid_services::NOT_CONFIGURED
                || r.json["error"] == ems_api::cloud::NOT_CONFIGURED
                || r.json["error"] == ems_api::mqtt::NOT_CONFIGURED
                || r.json["error"] == ems_api::island::NOT_CONFIGURED;
            let served = r.status != StatusCode::METHOD_NOT_ALLOWED
                && !(r.status == StatusCode::NOT_FOUND && r.json["field"] != "id" && !not_configured);
            let listed = documented.contains(&(m.as_str().to_owned(), path.clone()));
            assert_eq!(served, listed, "{m} {path}: status {} body {}", r.status, r.json);
        }
    }
    // Unknown paths are a JSON 404.
    let r = h.get("/api/v1/nope", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json["error"].is_string());
}

/// (method, path, body, roles allowed)
fn matrix() -> Vec<(Method, &'static str, Value, &'static [&'static str])> {
    let read: &[&str] = &[VIEWER, OPERATOR, ADMIN];
    let operate: &[&str] = &[OPERATOR, ADMIN];
    vec![
        (Method::GET, "/api/v1/current-data", Value::Null, read),
        (
            Method::GET,
            "/api/v1/history?from=2026-05-01T00:00:00Z&to=2026-05-02T00:00:00Z&channels=_sum/EssSoc",
            Value::Null,
            read,
        ),
        (Method::GET, "/api/v1/safety", Value::Null, read),
        (Method::GET, "/api/v1/control-modes", Value::Null, read),
        (Method::POST, "/api/v1/control-modes", json!({}), operate),
        (Method::POST, "/api/v1/state", json!({"request": "stop"}), operate),
        (Method::POST, "/api/v1/reset", json!({"reason": "test"}), operate),
        (Method::POST, "/api/v1/emergency-stop", json!({}), operate),
        (Method::POST, "/api/v1/schedules", json!({}), &[PROVIDER, ADMIN]),
        (Method::POST, "/api/v1/graphql", json!({"query": "{ version }"}), &[PROVIDER, ADMIN]),
        (Method::GET, "/api/v1/schedules/sch-x", Value::Null, &[VIEWER, OPERATOR, PROVIDER, ADMIN]),
        (Method::DELETE, "/api/v1/schedules/sch-x", Value::Null, &[OPERATOR, PROVIDER, ADMIN]),
        (Method::GET, "/metrics", Value::Null, read),
        (Method::GET, "/api/v1/audit", Value::Null, operate),
        (Method::GET, "/api/v1/site-mode", Value::Null, read),
        (Method::POST, "/api/v1/site-mode", json!({"mode": "passive"}), operate),
    ]
}

#[tokio::test]
async fn every_endpoint_checks_token_and_role() {
    let h = harness();
    for (method, path, body, allowed) in matrix() {
        let bytes = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        let r = h.raw(method.clone(), path, None, bytes.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} without token");
        assert!(r.json["error"].as_str().unwrap().contains("bearer"));
        let r = h.raw(method.clone(), path, Some("wrong"), bytes.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} bad token");
        for token in [VIEWER, OPERATOR, PROVIDER, ADMIN] {
            let r = h.raw(method.clone(), path, Some(token), bytes.clone()).await;
            if allowed.contains(&token) {
                assert!(
                    r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                    "{method} {path} {token}: {} {}",
                    r.status,
                    r.json
                );
            } else {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path} {token}: {}", r.json);
                assert!(r.json["error"].is_string());
            }
        }
    }
    let refusals = h.audit().iter().filter(|e| e.outcome == Outcome::Refused).count();
    assert!(refusals >= 2 * matrix().len(), "auth refusals are audited ({refusals})");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let h = harness_with(RateLimit { burst: 2.0, per_second: 0.25 }, true);
    assert_eq!(h.get("/api/v1/safety", Some(VIEWER)).await.status, StatusCode::OK);
    assert_eq!(h.get("/api/v1/safety", Some(VIEWER)).await.status, StatusCode::OK);
    let r = h.get("/api/v1/safety", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=4).contains(&secs), "{secs}");
    // Per token: another token still passes.
    assert_eq!(h.get("/api/v1/safety", Some(OPERATOR)).await.status, StatusCode::OK);
}

fn sample_view() -> SiteView {
    let mut v = SiteView { at: Some(t0()), ..SiteView::default() };
    v.channels.insert("_sum/EssSoc".into(), ChannelValue::Number(55.0));
    v.channels.insert("_sum/GridActivePower".into(), ChannelValue::Number(-1200.0));
    v.channels.insert("_sum/State".into(), ChannelValue::Text("RUNNING".into()));
    v.safety = SafetyView {
        state: "RUNNING".into(),
        max_charge_w: 3000.0,
        max_discharge_w: 2500.0,
        charge_limited_by: vec!["Cell temperature derating".into()],
        discharge_limited_by: vec![],
        latched_faults: vec![],
        recent_events: vec!["IDLE -> RUNNING".into()],
        mode: "passive".into(),
    };
    v
}

#[tokio::test]
async fn current_data_all_and_selected_channels() {
    let h = harness();
    h.view.send_replace(sample_view());
    let r = h.get("/api/v1/current-data", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["channels"]["_sum/EssSoc"], 55.0);
    assert_eq!(r.json["channels"]["_sum/State"], "RUNNING");
    assert_eq!(r.json["timestamp"], "2026-05-01T12:00:00Z");
    let r = h
        .get("/api/v1/current-data?channels=_sum/EssSoc,_sum/GridActivePower,_sum/Unknown", Some(VIEWER))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["channels"].as_object().unwrap().len(), 3);
    assert_eq!(r.json["channels"]["_sum/GridActivePower"], -1200.0);
    assert_eq!(r.json["channels"]["_sum/Unknown"], Value::Null);
    for bad in ["", "nochannel", ",,,"] {
        let r = h.get(&format!("/api/v1/current-data?channels={bad}"), Some(VIEWER)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json["field"], "channels");
    }
}

#[tokio::test]
async fn safety_shows_state_envelope_and_reasons() {
    let h = harness();
    h.view.send_replace(sample_view());
    let r = h.get("/api/v1/safety", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["state"], "RUNNING");
    assert_eq!(r.json["maxChargeW"], 3000.0);
    assert_eq!(r.json["chargeLimitedBy"][0], "Cell temperature derating");
    assert_eq!(r.json["recentEvents"][0], "IDLE -> RUNNING");
}

#[tokio::test]
async fn history_queries_the_store_and_validates_parameters() {
    let h = harness();
    h.store.record(t0(), &[("_sum/EssSoc", 50.0), ("_sum/GridActivePower", 10.0)]).unwrap();
    h.store
        .record(t0().checked_add(jiff::SignedDuration::from_secs(30)).unwrap(), &[("_sum/EssSoc", 52.0)])
        .unwrap();
    let base = "/api/v1/history?from=2026-05-01T12:00:00Z&to=2026-05-01T13:00:00Z";
    let r = h.get(&format!("{base}&channels=_sum/EssSoc"), Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["points"].as_array().unwrap().len(), 2);
    let r = h.get(&format!("{base}&channels=_sum/EssSoc&resolution=60"), Some(VIEWER)).await;
    assert_eq!(r.json["points"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["points"][0]["value"], 51.0);
    let cases = [
        ("/api/v1/history?to=2026-05-01T13:00:00Z&channels=_sum/EssSoc", "from"),
        ("/api/v1/history?from=yesterday&to=2026-05-01T13:00:00Z&channels=_sum/EssSoc", "from"),
        ("/api/v1/history?from=2026-05-01T13:00:00Z&to=2026-05-01T12:00:00Z&channels=_sum/EssSoc", "to"),
        ("/api/v1/history?from=2026-01-01T00:00:00Z&to=2026-05-01T12:00:00Z&channels=_sum/EssSoc", "to"),
        ("/api/v1/history?from=2026-05-01T12:00:00Z&to=2026-05-01T13:00:00Z", "channels"),
    ];
    for (path, field) in cases {
        let r = h.get(path, Some(VIEWER)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.json["field"], field, "{path}: {}", r.json);
    }
    for res in ["-1", "NaN", "1e3", "99999999999"] {
        let r = h.get(&format!("{base}&channels=_sum/EssSoc&resolution={res}"), Some(VIEWER)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{res}");
        assert_eq!(r.json["field"], "resolution");
    }
}

#[tokio::test]
async fn state_requests_and_409_when_refused() {
    let h = harness();
    let r = h.post("/api/v1/state", Some(OPERATOR), &json!({"request": "start"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["state"], "RUNNING");
    let r = h.post("/api/v1/state", Some(OPERATOR), &json!({"request": "start"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json["state"], "RUNNING");
    assert!(r.json["reason"].as_str().unwrap().contains("not valid"));
    assert!(r.json["error"].is_string());
    let r = h.post("/api/v1/state", Some(ADMIN), &json!({"request": "stop"})).await;
    assert_eq!(r.json["state"], "IDLE");
    for (body, field) in [
        (json!({"request": "launch"}), "request"),
        (json!({"request": "reset"}), "request"),
        (json!({"request": 1}), "request"),
        (json!({}), "request"),
        (json!({"request": "start", "force": true}), "force"),
    ] {
        let r = h.post("/api/v1/state", Some(OPERATOR), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json["field"], field, "{body}");
    }
    let audit = h.audit();
    assert!(audit
        .iter()
        .any(|e| e.action.contains("start") && e.outcome == Outcome::Refused && e.actor == "ops (operator)"));
    assert!(audit
        .iter()
        .any(|e| e.action.contains("stop") && e.outcome == Outcome::Ok && e.actor == "root (admin)"));
}

#[tokio::test]
async fn emergency_stop_and_reset() {
    let h = harness();
    let r = h.post("/api/v1/reset", Some(OPERATOR), &json!({"reason": "test"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "reset outside STOPPED is refused");
    assert_eq!(r.json["state"], "IDLE");
    let r = h.raw(Method::POST, "/api/v1/emergency-stop", Some(OPERATOR), Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["state"], "STOPPED");
    assert_eq!(*h.state.lock().unwrap(), State::Stopped);
    // An e-stop never fails on its body.
    let r = h.raw(Method::POST, "/api/v1/emergency-stop", Some(ADMIN), b"not json".to_vec()).await;
    assert_eq!(r.status, StatusCode::OK);
    for (body, field) in [
        (json!({}), "reason"),
        (json!({"reason": ""}), "reason"),
        (json!({"reason": "   "}), "reason"),
        (json!({"reason": 5}), "reason"),
        (json!({"reason": "x".repeat(501)}), "reason"),
    ] {
        let r = h.post("/api/v1/reset", Some(OPERATOR), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json["field"], field);
    }
    assert_eq!(*h.state.lock().unwrap(), State::Stopped);
    let r = h.post("/api/v1/reset", Some(OPERATOR), &json!({"reason": "checked the battery room"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["state"], "IDLE");
    assert!(h
        .audit()
        .iter()
        .any(|e| e.action.contains("checked the battery room") && e.outcome == Outcome::Ok));
}

#[tokio::test]
async fn loop_unavailable_is_503_not_500() {
    let h = harness_with(RateLimit::default(), false);
    let r = h.post("/api/v1/emergency-stop", Some(OPERATOR), &json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.json["error"].is_string());
    assert!(h.audit().iter().any(|e| e.outcome == Outcome::Failed));
}

#[tokio::test]
async fn malformed_bodies_are_4xx_json() {
    let h = harness();
    let bodies: [&[u8]; 8] = [
        b"",
        b"{",
        b"[1,2]",
        b"\"ess\"",
        b"{\"request\": \"st\xffrt\"}",
        b"{\"request\": NaN}",
        b"{\"request\": 1e999}",
        b"null",
    ];
    for path in
        ["/api/v1/state", "/api/v1/reset", "/api/v1/control-modes", "/api/v1/schedules", "/api/v1/graphql"]
    {
        for b in bodies {
            let r = h.raw(Method::POST, path, Some(ADMIN), b.to_vec()).await;
            assert!(r.status.is_client_error(), "{path} {b:?}: {}", r.status);
            assert!(r.json["error"].is_string(), "{path} {b:?}");
        }
        let huge = vec![b' '; 70 * 1024];
        let r = h.raw(Method::POST, path, Some(ADMIN), huge).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(r.json["error"].is_string());
    }
}

#[tokio::test]
async fn control_modes_over_http_with_watchdog() {
    let h = harness();
    let r = h.get("/api/v1/control-modes", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["activeControlModes"], json!({"ess": null}));
    assert_eq!(r.json["availableControlModes"]["ess"].as_array().unwrap().len(), 4);
    let r = h
        .post(
            "/api/v1/control-modes",
            Some(OPERATOR),
            &json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": 1000}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["activeControlModes"]["ess"]["mode"], "LIMIT_CHARGE");
    assert_eq!(r.json["activeControlModes"]["ess"]["maxChargePower"], 1000.0);
    let now = h.clock.get();
    assert!(h.modes.lock().unwrap().active_override(now).is_some());
    h.clock.advance(61);
    let r = h.get("/api/v1/control-modes", Some(VIEWER)).await;
    assert_eq!(r.json["activeControlModes"], json!({"ess": null}), "watchdog expired");
    assert!(h.modes.lock().unwrap().active_override(h.clock.get()).is_none());
    let r = h
        .post(
            "/api/v1/control-modes",
            Some(ADMIN),
            &json!({"activateControlModes": {"ess": {"mode": "NO_DISCHARGE", "duration": "PT15M"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    h.clock.advance(600);
    let r = h.get("/api/v1/control-modes", Some(VIEWER)).await;
    assert_eq!(r.json["activeControlModes"]["ess"]["mode"], "NO_DISCHARGE");
    let r = h.post("/api/v1/control-modes", Some(OPERATOR), &json!({})).await;
    assert_eq!(r.json["activeControlModes"]["ess"]["mode"], "NO_DISCHARGE", "{{}} changes nothing");
    let r = h.post("/api/v1/control-modes", Some(OPERATOR), &json!({"ess": null})).await;
    assert_eq!(r.json["activeControlModes"], json!({"ess": null}));
    for (body, field) in [
        (json!({"ess": {"mode": "FORCE_CHARGE", "power": "NaN"}}), "ess.power"),
        (json!({"ess": {"mode": "FORCE_CHARGE", "power": -3}}), "ess.power"),
        (json!({"ess": {"mode": "WHATEVER"}}), "ess.mode"),
        (json!({"ess": {"mode": "NO_DISCHARGE", "until": "2020-01-01T00:00:00Z"}}), "ess.until"),
    ] {
        let r = h.post("/api/v1/control-modes", Some(OPERATOR), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json["field"], field);
    }
    let audit = h.audit();
    assert!(audit.iter().any(|e| e.detail.contains("LIMIT_CHARGE") && e.outcome == Outcome::Ok));
    assert!(audit.iter().any(|e| e.detail.contains("deactivated") && e.outcome == Outcome::Ok));
    assert!(audit.iter().any(|e| e.detail.contains("ess.until") && e.outcome == Outcome::Refused));
}

#[tokio::test]
async fn schedules_over_http() {
    let h = harness();
    let key = provider_key();
    let body = signed(SN, "2026-05-01T12:05:00Z", "CHARGE", 3000, "acme", "nonce-0001", &key);
    let r = h.post("/api/v1/schedules", Some(PROVIDER), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["success"], true);
    let id = r.json["scheduleId"].as_str().unwrap().to_owned();
    let r = h.post("/api/v1/schedules", Some(PROVIDER), &body).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "replay");
    assert_eq!(r.json["field"], "nonce");
    let r = h.get(&format!("/api/v1/schedules/{id}"), Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["operation"], "CHARGE");
    assert_eq!(r.json["power"], 3000);
    assert_eq!(r.json["appliedW"], Value::Null);
    h.schedules.record_execution(&id, ems_core::watts!(-2500.0), Some("Cell temperature derating")).unwrap();
    let r = h.get(&format!("/api/v1/schedules/{id}"), Some(PROVIDER)).await;
    assert_eq!(r.json["appliedW"], -2500.0);
    assert_eq!(r.json["limitedBy"], "Cell temperature derating");
    let r = h.get("/api/v1/schedules", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["schedules"][0]["scheduleId"], id.as_str());
    assert_eq!(r.json["schedules"][0]["appliedW"], -2500.0);
    assert_eq!(h.get("/api/v1/schedules", None).await.status, StatusCode::UNAUTHORIZED);
    let mut bad = signed(SN, "2026-05-01T12:05:00Z", "CHARGE", 3000, "acme", "nonce-0002", &key);
    bad["power"] = json!(3001);
    let r = h.post("/api/v1/schedules", Some(PROVIDER), &bad).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["field"], "auth.sign.signature");
    let r = h.delete(&format!("/api/v1/schedules/{id}"), Some(PROVIDER)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.get(&format!("/api/v1/schedules/{id}"), Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["field"], "id");
    let r = h.delete(&format!("/api/v1/schedules/{id}"), Some(OPERATOR)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
