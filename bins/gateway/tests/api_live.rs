//! The local API of the running gateway (issue #6): the default simulated site with
//! `--api-listen 127.0.0.1:0`, the generated admin token read from its output, and plain HTTP/1.1
//! requests: the OpenAPI document without a token, telemetry and safety with it, a control mode,
//! a refused state request (409), the software E-stop (STOPPED, zero power) and the reset with a
//! reason back to IDLE, then start to RUNNING.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

mod support;

use support::{find, http, start, Gateway};

/// One HTTP/1.1 request; returns the status and the body.
fn state(g: &Gateway) -> String {
    let (code, v) = http(g, "GET", "/api/v1/safety", None, true);
    assert_eq!(code, 200, "{v}");
    v["state"].as_str().unwrap().to_owned()
}

fn wait_for(g: &Gateway, want: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while state(g) != want {
        assert!(Instant::now() < until, "never {want}: {}", state(g));
        // The API allows 5 requests a second per token (burst 20).
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The value of `key` anywhere in `v` (the channel's number, or its `value` field).
#[test]
fn the_running_gateway_serves_the_api_and_obeys_estop_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let g = start(&dir.path().join("gw.state"));
    assert_eq!(g.token.len(), 64, "a 32-byte hex token");

    let (code, doc) = http(&g, "GET", "/api/v1/openapi.json", None, false);
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let (code, _) = http(&g, "GET", "/api/v1/current-data", None, false);
    assert_eq!(code, 401, "a token is required");

    wait_for(&g, "RUNNING");
    let (code, data) = http(&g, "GET", "/api/v1/current-data?channels=_sum/EssSoc,_sum/State", None, true);
    assert_eq!(code, 200, "{data}");
    let text = data.to_string();
    assert!(text.contains("_sum/EssSoc") && text.contains("RUNNING"), "{text}");
    assert!(!text.contains("_sum/GridActivePower"), "filtered: {text}");

    // A control mode reaches the controller as an override.
    let (code, v) =
        http(&g, "POST", "/api/v1/control-modes", Some(r#"{"ess": {"mode": "NO_DISCHARGE"}}"#), true);
    assert_eq!(code, 200, "{v}");
    let (_, v) = http(&g, "GET", "/api/v1/control-modes", None, true);
    assert!(v.to_string().contains("NO_DISCHARGE"), "{v}");

    // Start while RUNNING: refused by the state machine → 409 with the state.
    let (code, v) = http(&g, "POST", "/api/v1/state", Some(r#"{"request": "start"}"#), true);
    assert_eq!(code, 409, "{v}");
    assert!(v.to_string().contains("RUNNING"), "{v}");

    // Software E-stop → STOPPED, zero power; the event shows in the safety view.
    let (code, v) = http(&g, "POST", "/api/v1/emergency-stop", None, true);
    assert_eq!(code, 200, "{v}");
    wait_for(&g, "STOPPED");
    let (_, v) = http(&g, "GET", "/api/v1/safety", None, true);
    assert!(v.to_string().contains("E-stop pressed"), "{v}");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, d) = http(&g, "GET", "/api/v1/current-data?channels=_sum/EssActivePower", None, true);
        assert_eq!(code, 200, "{d}");
        let w = find(&d, "_sum/EssActivePower").and_then(serde_json::Value::as_f64).unwrap_or(f64::MAX);
        if w.abs() < 50.0 {
            break;
        }
        assert!(Instant::now() < until, "battery power not zero after the E-stop: {d}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Reset needs a reason; then IDLE, then start → RUNNING.
    let (code, v) = http(&g, "POST", "/api/v1/reset", Some(r#"{"reason": ""}"#), true);
    assert_eq!(code, 400, "{v}");
    let (code, v) = http(&g, "POST", "/api/v1/reset", Some(r#"{"reason": "checked the cabinet"}"#), true);
    assert_eq!(code, 200, "{v}");
    wait_for(&g, "IDLE");
    let (code, v) = http(&g, "POST", "/api/v1/state", Some(r#"{"request": "start"}"#), true);
    assert_eq!(code, 200, "{v}");
    wait_for(&g, "RUNNING");
}

#[test]
fn kill_9_during_writes_leaves_the_audit_database_intact_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("ems.db");
    let g = support::start_with(&dir.path().join("gw.state"), &["--api-db", db_path.to_str().unwrap()]);
    wait_for(&g, "RUNNING");
    // Changes that are audited while the loop writes history every cycle.
    // (A refresh of the same mode is not audited; each of these is a change.)
    for body in [
        r#"{"ess": {"mode": "NO_DISCHARGE"}}"#,
        r#"{"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": 1000}}"#,
        r#"{"ess": null}"#,
    ] {
        let (code, v) = http(&g, "POST", "/api/v1/control-modes", Some(body), true);
        assert_eq!(code, 200, "{v}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, v) = http(&g, "POST", "/api/v1/emergency-stop", None, true);
    assert_eq!(code, 200, "{v}");
    wait_for(&g, "STOPPED");
    // The control thread never waits for SQLite: its audit entries reach the database through
    // the writer thread shortly after the view shows the state. Wait until the stop is written
    // (bounded), then kill while history keeps being written every cycle.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let written = ems_api::db::Db::open(&db_path)
            .ok()
            .and_then(|db| ems_api::ports::AuditSink::recent(&db, 10_000).ok())
            .is_some_and(|log| log.iter().any(|e| e.action.contains("RUNNING -> STOPPED")));
        if written {
            break;
        }
        assert!(Instant::now() < until, "the E-stop never reached the audit log");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: no graceful shutdown, no flush.
    drop(g);
    let db = ems_api::db::Db::open(&db_path).unwrap();
    assert_eq!(db.integrity_check().unwrap(), "ok");
    let log: Vec<String> =
        ems_api::ports::AuditSink::recent(&db, 10_000).unwrap().into_iter().rev().map(|e| e.action).collect();
    // Everything that was confirmed before the kill is there, in order.
    let running = log.iter().position(|a| a.contains("-> RUNNING")).expect("start audited");
    let modes = log.iter().filter(|a| a.contains("control-modes")).count();
    let stopped = log.iter().position(|a| a.contains("RUNNING -> STOPPED")).expect("E-stop audited");
    assert!(running < stopped && modes >= 3, "{log:?}");
    let seqs: Vec<u64> =
        ems_api::ports::AuditSink::recent(&db, 10_000).unwrap().into_iter().rev().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous sequence numbers");
}
