//! `GET`/`PUT /api/v1/grid-services` (issue #13 item 5): who may commit, the 400s naming the
//! field and the value (capacity above the configured one, window end before its start,
//! unknown or unconfigured service, overlapping windows), the view (`active` only inside a
//! window, the live status from the source), auditing, and persistence across a restart.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::http::{Method, StatusCode};
use ems_api::db::Db;
use ems_api::grid_services::{
    ConfiguredService, GridServices, GridStatusSource, LiveServices, Service, ServiceLive,
};
use ems_api::ports::Outcome;
use ems_core::watts;
use rest_support::*;
use serde_json::{json, Value};
use std::sync::Arc;

struct FixedStatus;

impl GridStatusSource for FixedStatus {
    fn live(&self) -> Option<LiveServices> {
        Some(LiveServices {
            at: t0(),
            state: "RUNNING".into(),
            frequency_hz: Some(ems_core::hertz!(49.95)),
            delta_w: watts!(400.0),
            engaged: true,
            services: vec![ServiceLive {
                service: "fcr-n".into(),
                activation: "ACTIVE".into(),
                delta_w: watts!(400.0),
                endurance_up_s: Some(3600.0),
                endurance_down_s: None,
                nem: "off".into(),
                aem: "off".into(),
                alert_state: false,
                ready: true,
            }],
            compliance_log: None,
        })
    }
}

fn services() -> Arc<GridServices> {
    let configured = vec![
        ConfiguredService {
            service: Service::FcrN,
            capacity_w: watts!(1000.0),
            detail: "FCR-N 1000 W".into(),
        },
        ConfiguredService { service: Service::Ffr, capacity_w: watts!(1500.0), detail: "FFR 1500 W".into() },
    ];
    Arc::new(GridServices::new("nordic-2025-v1.1", configured, Arc::new(FixedStatus)))
}

fn harness_with(g: Arc<GridServices>) -> Harness {
    harness_grid(ems_api::auth::RateLimit { burst: 10_000.0, per_second: 1000.0 }, true, None, Some(g))
}

fn iso(min: i64) -> String {
    t0().checked_add(jiff::SignedDuration::from_mins(min)).unwrap().to_string()
}

fn commitment(service: &str, w: f64, from: i64, until: i64) -> Value {
    json!({ "service": service, "capacity_w": w, "from": iso(from), "until": iso(until) })
}

async fn put(h: &Harness, token: &str, body: &Value) -> Reply {
    h.raw(Method::PUT, "/api/v1/grid-services", Some(token), serde_json::to_vec(body).unwrap()).await
}

#[tokio::test]
async fn put_then_get_shows_commitments_active_only_inside_their_window() {
    let h = harness_with(services());
    let body =
        json!({ "commitments": [commitment("fcr-n", 800.0, 10, 70), commitment("ffr", 1500.0, -5, 5)] });
    let r = put(&h, OPERATOR, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = h.get("/api/v1/grid-services", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["parameter_set"], "nordic-2025-v1.1");
    assert_eq!(r.json["configured"][0]["capacity_w"], 1000.0);
    assert_eq!(r.json["commitments"].as_array().unwrap().len(), 2);
    // Sorted by start: FFR first.
    assert_eq!(r.json["commitments"][0]["service"], "ffr");
    assert_eq!(r.json["active"], json!(["ffr"]));
    assert_eq!(r.json["live"]["services"][0]["activation"], "ACTIVE");
    assert_eq!(r.json["live"]["services"][0]["endurance_up_s"], 3600.0);
    assert_eq!(r.json["live"]["frequency_hz"], 49.95);
    h.clock.advance(15 * 60);
    let r = h.get("/api/v1/grid-services", Some(VIEWER)).await;
    assert_eq!(r.json["active"], json!(["fcr-n"]));
    h.clock.advance(60 * 60);
    let r = h.get("/api/v1/grid-services", Some(VIEWER)).await;
    assert_eq!(r.json["active"], json!([]));
    // A provider may commit too; [] clears.
    let r = put(&h, PROVIDER, &json!({ "commitments": [] })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["commitments"], json!([]));
    let audit = h.audit();
    let writes: Vec<_> = audit.iter().filter(|e| e.action == "PUT /api/v1/grid-services").collect();
    assert_eq!(writes.len(), 2);
    assert!(writes.iter().all(|e| e.outcome == Outcome::Ok));
    assert!(writes.iter().any(|e| e.detail.contains("fcr-n 800 W")), "{writes:?}");
    assert!(writes.iter().any(|e| e.detail.contains("cleared")), "{writes:?}");
}

#[tokio::test]
async fn a_viewer_may_read_but_not_commit() {
    let h = harness_with(services());
    let r = put(&h, VIEWER, &json!({ "commitments": [commitment("fcr-n", 500.0, 0, 60)] })).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert_eq!(h.get("/api/v1/grid-services", Some(VIEWER)).await.json["commitments"], json!([]));
    assert_eq!(h.get("/api/v1/grid-services", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_the_value() {
    let h = harness_with(services());
    for (body, field, text) in [
        (
            json!({ "commitments": [commitment("fcr-n", 1200.0, 0, 60)] }),
            "commitments[0].capacity_w",
            "1200 W is above the configured capacity of fcr-n (1000 W)",
        ),
        (
            json!({ "commitments": [commitment("fcr-n", 0.0, 0, 60)] }),
            "commitments[0].capacity_w",
            "must be > 0 W, got 0",
        ),
        (
            json!({ "commitments": [commitment("fcr-n", 500.0, 0, 60), commitment("ffr", 500.0, 60, 30)] }),
            "commitments[1].until",
            "is not after from",
        ),
        (
            json!({ "commitments": [commitment("afrr", 500.0, 0, 60)] }),
            "commitments[0].service",
            "unknown service 'afrr'",
        ),
        (
            json!({ "commitments": [commitment("fcr-d-up", 500.0, 0, 60)] }),
            "commitments[0].service",
            "'fcr-d-up' is not configured on this site",
        ),
        (
            json!({ "commitments": [commitment("fcr-n", 500.0, 0, 60), commitment("fcr-n", 300.0, 30, 90)] }),
            "commitments[1].from",
            "overlaps commitments[0]",
        ),
        (
            json!({ "commitments": [{ "service": "fcr-n", "capacity_w": 500, "from": "tomorrow", "until": iso(60) }] }),
            "commitments[0].from",
            "'tomorrow' is not an RFC 3339 time",
        ),
        (
            json!({ "commitments": [{ "service": "fcr-n", "capacity_w": 500, "from": iso(0), "until": iso(60), "price": 3 }] }),
            "commitments[0].price",
            "unknown field",
        ),
        (json!({ "services": [] }), "services", "unknown field"),
    ] {
        let r = put(&h, OPERATOR, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
        assert_eq!(r.json["field"], field, "{}", r.json);
        let e = r.json["error"].as_str().unwrap();
        assert!(e.starts_with(field) && e.contains(text), "{e}\nwanted: {text}");
    }
    // Nothing was stored, and every refusal is audited.
    assert_eq!(h.get("/api/v1/grid-services", Some(VIEWER)).await.json["commitments"], json!([]));
    let refused = h
        .audit()
        .iter()
        .filter(|e| e.action == "PUT /api/v1/grid-services" && e.outcome == Outcome::Refused)
        .count();
    assert_eq!(refused, 9);
}

#[tokio::test]
async fn a_site_without_grid_services_answers_404() {
    let h = harness();
    let r = h.get("/api/v1/grid-services", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"], ems_api::grid_services::NOT_CONFIGURED);
}

#[tokio::test]
async fn commitments_survive_a_restart_and_a_lowered_capacity_drops_what_it_no_longer_allows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ems.db");
    {
        let g = services();
        assert_eq!(g.attach_db(Arc::new(Db::open(&path).unwrap())).unwrap(), 0);
        let h = harness_with(g);
        let body =
            json!({ "commitments": [commitment("fcr-n", 900.0, 0, 60), commitment("ffr", 1000.0, 0, 60)] });
        assert_eq!(put(&h, OPERATOR, &body).await.status, StatusCode::OK);
    }
    // Restart: a new process state over the same database.
    let g = services();
    assert_eq!(g.attach_db(Arc::new(Db::open(&path).unwrap())).unwrap(), 2);
    let h = harness_with(g);
    let r = h.get("/api/v1/grid-services", Some(VIEWER)).await;
    assert_eq!(r.json["commitments"][0]["capacity_w"], 900.0, "{}", r.json);
    assert_eq!(r.json["active"], json!(["fcr-n", "ffr"]));
    // The site file now sells only 800 W of FCR-N: the stored 900 W commitment is dropped.
    let lowered = Arc::new(GridServices::new(
        "nordic-2025-v1.1",
        vec![ConfiguredService { service: Service::FcrN, capacity_w: watts!(800.0), detail: String::new() }],
        Arc::new(FixedStatus),
    ));
    assert_eq!(lowered.attach_db(Arc::new(Db::open(&path).unwrap())).unwrap(), 0);
}
