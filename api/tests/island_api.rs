//! `GET /api/v1/island`, `POST /api/v1/island/black-start` and `/reset` (issue #13 item 6):
//! the view as the loop published it, the operator role, the reason required and audited, the
//! actions going to the loop through the command channel (a refused reset is a 409), and 404
//! without an island.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::http::StatusCode;
use ems_api::auth::RateLimit;
use ems_api::island::{IslandBoard, IslandLoadView, IslandView};
use ems_api::ports::Outcome;
use rest_support::*;
use serde_json::json;

fn limit() -> RateLimit {
    RateLimit { burst: 10_000.0, per_second: 1000.0 }
}

fn islanded() -> IslandView {
    IslandView {
        live: true,
        at_s: 75.0,
        grid_state: "ISLANDED".into(),
        breaker: Some("open".into()),
        breaker_command: "hold".into(),
        inverter_mode: Some("grid-forming".into()),
        inverter_command: "grid-forming".into(),
        loads: vec![IslandLoadView {
            name: "fridge".into(),
            priority: 0,
            nominal_w: 300.0,
            commanded: true,
            on: Some(true),
        }],
        setpoint_bound: Some("islanded: grid-forming inverter follows the load (0 W)".into()),
        ..IslandView::default()
    }
}

#[tokio::test]
async fn the_view_is_what_the_loop_published() {
    let board = IslandBoard::new();
    let h = harness_island(limit(), true, None, None, Some(board.clone()));
    let r = h.get("/api/v1/island", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["live"], json!(false), "nothing published yet");
    board.publish(islanded());
    let r = h.get("/api/v1/island", Some(VIEWER)).await;
    assert_eq!(r.json["grid_state"], json!("ISLANDED"));
    assert_eq!(r.json["breaker"], json!("open"));
    assert_eq!(r.json["inverter_mode"], json!("grid-forming"));
    assert_eq!(r.json["loads"][0]["name"], json!("fridge"));
    assert_eq!(r.json["loads"][0]["on"], json!(true));
    for key in [
        "close_conditions",
        "detection",
        "stop_reason",
        "power_limit_w",
        "setpoints_allowed",
        "recent_events",
    ] {
        assert!(r.json.get(key).is_some(), "missing {key}: {}", r.json);
    }
    assert_eq!(h.get("/api/v1/island", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn actions_need_the_operator_role_and_a_reason_and_are_audited() {
    let h = harness_island(limit(), true, None, None, Some(IslandBoard::new()));
    let body = json!({ "reason": "site dark, grid gone" });
    let r = h.post("/api/v1/island/black-start", Some(VIEWER), &body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h.post("/api/v1/island/black-start", Some(OPERATOR), &json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["field"], json!("reason"));
    let r = h.post("/api/v1/island/black-start", Some(OPERATOR), &json!({ "reason": "  " })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h.post("/api/v1/island/black-start", Some(OPERATOR), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["accepted"], json!(true));
    // A reset outside SAFE STOP: the loop refuses.
    let r = h.post("/api/v1/island/reset", Some(OPERATOR), &json!({ "reason": "breaker inspected" })).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("SAFE STOP"));
    let audit = h.audit();
    assert!(audit.iter().any(|e| e.action == "POST /api/v1/island/black-start (site dark, grid gone)"
        && e.outcome == Outcome::Ok
        && e.actor.starts_with("ops")));
    assert!(audit
        .iter()
        .any(|e| e.action.starts_with("POST /api/v1/island/reset") && e.outcome == Outcome::Refused));
}

#[tokio::test]
async fn without_an_island_every_endpoint_answers_404() {
    let h = harness_island(limit(), true, None, None, None);
    assert_eq!(h.get("/api/v1/island", Some(VIEWER)).await.status, StatusCode::NOT_FOUND);
    let r = h.post("/api/v1/island/black-start", Some(OPERATOR), &json!({ "reason": "x" })).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
