//! Island operation through the running gateway (issue #13 item 6): the built-in simulated site
//! with `--island examples/island/sim.toml` (the grid fails at 60 s and returns at 180 s), seen on
//! `GET /api/v1/island`: CONNECTED, then ISLANDED with the critical loads back and the set-point
//! bound, then CONNECTED again after the resynchronisation; an operator reset outside SAFE STOP
//! is refused through the loop.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

mod support;

use support::{http, spawn};

#[test]
fn a_grid_loss_and_return_on_the_simulated_site_shows_on_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/island/sim.toml");
    let g = spawn(&["--speed", "20", "--duration", "600", "--island", example], state.to_str().unwrap());
    let end = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut islanded = None;
    loop {
        let (code, v) = http(&g, "GET", "/api/v1/island", None, true);
        assert_eq!(code, 200, "{v}");
        let s = v["grid_state"].as_str().unwrap_or("").to_owned();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "ISLANDED" && v["loads"][0]["on"] == true && islanded.is_none() {
            islanded = Some(v.clone());
        }
        if islanded.is_some() && s == "CONNECTED" {
            break;
        }
        assert!(Instant::now() < end, "states seen {seen:?}; last {v}");
        std::thread::sleep(Duration::from_millis(450));
    }
    let v = islanded.unwrap();
    assert_eq!(v["breaker"], "open");
    assert_eq!(v["inverter_mode"], "grid-forming");
    assert_eq!(v["setpoints_allowed"], false);
    assert!(v["setpoint_bound"].as_str().unwrap().starts_with("islanded"), "{v}");
    assert!(seen.contains(&"ISLANDED".to_owned()), "{seen:?}");
    let body = serde_json::json!({ "reason": "test: nothing to reset" }).to_string();
    let (code, v) = http(&g, "POST", "/api/v1/island/reset", Some(&body), true);
    assert_eq!(code, 409, "{v}");
}
