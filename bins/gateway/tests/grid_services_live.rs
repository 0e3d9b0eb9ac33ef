//! Grid services through the running gateway (issue #13): the built-in simulated site with
//! `--grid-services` (FCR-N 1000 W, the simulated frequency's built-in `dip`: 50.00 Hz for
//! 60 s, then 49.90 Hz), a commitment through `PUT /api/v1/grid-services`, and the inverter
//! command following the dip (+ the committed 800 W); then the commitment withdrawn in the
//! middle of the dip and the service gone from the command (a service acts only inside a
//! committed window).
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

mod support;

use support::{find, http, spawn, Gateway};

fn battery_w(g: &Gateway) -> f64 {
    let (code, d) = http(g, "GET", "/api/v1/current-data?channels=_sum/EssActivePower", None, true);
    assert_eq!(code, 200, "{d}");
    find(&d, "_sum/EssActivePower").and_then(serde_json::Value::as_f64).unwrap()
}

fn live(g: &Gateway) -> serde_json::Value {
    let (code, v) = http(g, "GET", "/api/v1/grid-services", None, true);
    assert_eq!(code, 200, "{v}");
    v
}

/// Poll (within the API's rate limit) until `pred` holds; the last value.
fn until<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> T,
    pred: impl Fn(&T) -> bool,
) -> T {
    let end = Instant::now() + limit;
    loop {
        let v = f();
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < end, "{what}: never; last {v:?}");
        std::thread::sleep(Duration::from_millis(450));
    }
}

fn fcr_n(v: &serde_json::Value) -> Option<&serde_json::Value> {
    v["live"]["services"].as_array()?.iter().find(|s| s["service"] == "fcr-n")
}

#[test]
fn fcr_n_follows_a_frequency_dip_through_the_running_gateway_only_while_committed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grid.toml");
    std::fs::write(
        &file,
        "[grid_services]\n[grid_services.frequency]\nsource = \"simulated\"\nsignal = \"dip\"\n[grid_services.fcr_n]\ncapacity_w = 1000\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let g = spawn(
        &["--speed", "10", "--duration", "600", "--grid-services", file.to_str().unwrap()],
        state.to_str().unwrap(),
    );
    let now = jiff::Timestamp::now();
    let body = serde_json::json!({ "commitments": [{
        "service": "fcr-n", "capacity_w": 800,
        "from": now.checked_sub(jiff::SignedDuration::from_mins(1)).unwrap().to_string(),
        "until": now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap().to_string(),
    }] });
    let (code, v) = http(&g, "PUT", "/api/v1/grid-services", Some(&body.to_string()), true);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["active"], serde_json::json!(["fcr-n"]));

    // Before the dip (50.00 Hz, simulated t < 60 s): FCR-N armed, no Δ.
    let v = until(
        "FCR-N armed at 50 Hz",
        Duration::from_secs(6),
        || live(&g),
        |v| fcr_n(v).is_some_and(|s| s["activation"] == "ARMED") && v["live"]["frequency_hz"] == 50.0,
    );
    assert_eq!(fcr_n(&v).unwrap()["delta_w"], 0.0, "{v}");
    assert_eq!(fcr_n(&v).unwrap()["ready"], true, "{v}");
    assert!(fcr_n(&v).unwrap()["endurance_up_s"].as_f64().unwrap() > 0.0, "{v}");
    // The reservation (1.34 kW, 0.8 kWh each way) narrows what the mode may use; it does not
    // take the battery away from it: the morning's PV surplus still charges the battery.
    let before = until(
        "the mode charges beside the reservation",
        Duration::from_secs(6),
        || battery_w(&g),
        |w| *w < -500.0,
    );

    // The dip (49.90 Hz): +C = +800 W on top of the baseline, and the inverter follows.
    let v = until(
        "FCR-N at +800 W",
        Duration::from_secs(12),
        || live(&g),
        |v| fcr_n(v).and_then(|s| s["delta_w"].as_f64()).is_some_and(|d| (d - 800.0).abs() < 5.0),
    );
    assert!((v["live"]["frequency_hz"].as_f64().unwrap() - 49.9).abs() < 0.01, "{v}");
    assert_eq!(fcr_n(&v).unwrap()["activation"], "ACTIVE", "{v}");
    let during = until(
        "battery +800 W",
        Duration::from_secs(6),
        || battery_w(&g),
        |w| (w - before - 800.0).abs() < 150.0,
    );

    // Withdrawn mid-dip: the service stops acting (no FCR-N, Δ 0) and the command leaves +800 W.
    let (code, v) = http(&g, "PUT", "/api/v1/grid-services", Some(r#"{"commitments": []}"#), true);
    assert_eq!(code, 200, "{v}");
    let v = until(
        "FCR-N gone",
        Duration::from_secs(5),
        || live(&g),
        |v| fcr_n(v).is_none() && v["live"]["delta_w"] == 0.0,
    );
    assert_eq!(v["active"], serde_json::json!([]), "{v}");
    until("battery without FCR-N", Duration::from_secs(6), || battery_w(&g), |w| during - w > 400.0);
}

/// The compliance log in operation: FFR committed, the simulated frequency's `ffr-dip` (49.45 Hz
/// at simulated 60–70 s): one row per second before, one per 100 ms from 10 s before the
/// activation on, CRLF, the FFR columns showing the activation; the API reports the log.
#[test]
fn the_compliance_log_runs_at_1_hz_and_at_10_hz_from_10_s_before_an_ffr_activation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grid.toml");
    std::fs::write(
        &file,
        "[grid_services]\n[grid_services.frequency]\nsource = \"simulated\"\nsignal = \"ffr-dip\"\n\
         [grid_services.ffr]\ncapacity_w = 1000\nlevel_hz = 49.5\n\
         [grid_services.compliance_log]\ndir = \"svk\"\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut g = spawn(
        &["--speed", "10", "--duration", "100", "--grid-services", file.to_str().unwrap()],
        state.to_str().unwrap(),
    );
    let now = jiff::Timestamp::now();
    let body = serde_json::json!({ "commitments": [{
        "service": "ffr", "capacity_w": 1000,
        "from": now.checked_sub(jiff::SignedDuration::from_mins(1)).unwrap().to_string(),
        "until": now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap().to_string(),
    }] });
    let (code, v) = http(&g, "PUT", "/api/v1/grid-services", Some(&body.to_string()), true);
    assert_eq!(code, 200, "{v}");
    let v = until(
        "the FFR activation in the log's state",
        Duration::from_secs(20),
        || live(&g),
        |v| v["live"]["compliance_log"]["ffr_activations"].as_u64().is_some_and(|n| n >= 1),
    );
    let log = &v["live"]["compliance_log"];
    assert_eq!(log["retention_days"], 14, "{v}");
    assert!(log["high_rate_until"].is_string(), "{v}");
    assert_eq!(log["samples_dropped"], 0, "{v}");
    assert!(g.wait(Duration::from_secs(30)).success());

    let files: Vec<_> =
        std::fs::read_dir(dir.path().join("svk")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("svk_") && name.ends_with(".csv") && name.len() == "svk_20261205T120000.csv".len()
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!text.replace("\r\n", "").contains('\n'), "CRLF line endings only");
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    assert_eq!(
        lines.next(),
        Some("DateTime,InsAcPow,GridFreq,ContStatus_FFR,Activated_FFR,ResSize_FFR,NEM,AEM,Pmin,Pmax,Cap_Up,Cap_Down")
    );
    // (ms since the first row, frequency, ContStatus_FFR, Activated_FFR in MW)
    let rows: Vec<(i64, Option<f64>, String, f64)> = lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c.len(), 12, "{l}");
            let t = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.f", c[0]).unwrap();
            let ms = t.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_millisecond();
            (ms, c[2].parse().ok(), c[3].to_owned(), c[4].parse().unwrap())
        })
        .collect();
    let t0 = rows[0].0;
    let first_active = rows.iter().find(|r| r.3 > 0.0).expect("an FFR activation in the log");
    let trigger = first_active.0;
    assert!(first_active.1.is_some_and(|f| f < 49.5), "{first_active:?}");
    // Simulated 60 s after the start, give or take the start-up.
    assert!((55_000..65_000).contains(&(trigger - t0)), "trigger {} ms after the first row", trigger - t0);
    assert!(rows.iter().filter(|r| r.0 < trigger).any(|r| r.2 == "1"), "ContStatus_FFR 1 while armed");
    // (The first row falls anywhere in its second; rows after it sit on whole seconds.)
    for w in rows.windows(2).skip(1) {
        let gap = w[1].0 - w[0].0;
        if w[1].0 < trigger - 10_000 {
            assert!((900..=1100).contains(&gap), "1 Hz before the window: {gap} ms at {}", w[0].0 - t0);
        } else if w[0].0 >= trigger - 10_000 {
            assert!((50..=150).contains(&gap), "10 Hz in the window: {gap} ms at {}", w[0].0 - t0);
        }
    }
    let high = rows.iter().filter(|r| r.0 >= trigger - 10_000 && r.0 < trigger).count();
    assert!(high >= 95, "the 10 s before the activation at 10 Hz: {high} rows");
}
