//! `ems-gateway simulate --tariff FILE`: the economics report of issue #5 from the command line.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

const TOU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tariffs/tou.toml");

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .arg("simulate")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn simulate_with_a_tariff_reports_costs_against_both_baselines_as_json_and_text() {
    let o = simulate(&["--days", "1", "--start-day", "100", "--tariff", TOU, "--report", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["violations"], 0, "{v}");
    assert_eq!(v["plans"], 96, "{v}");
    assert_eq!(v["tariff"], "Time-of-use DE (example)");
    let total = &v["savings"]["total"];
    for key in ["ems", "no_battery", "self_consumption", "vs_no_battery", "vs_self_consumption"] {
        assert!(total.get(key).is_some(), "missing {key}: {total}");
    }
    assert_eq!(v["savings"]["months"][0]["period"], "2018-04");
    assert!(v["ems"]["import_kwh"].as_f64().unwrap() >= 0.0);
    let o = simulate(&["--days", "1", "--tariff", TOU, "--pv-kwp", "5", "--battery-kwh", "5"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("saving vs no battery") && text.contains("wall time"),
        "{text}"
    );
}

#[test]
fn simulate_with_a_bad_tariff_or_home_names_the_problem() {
    let o = simulate(&["--days", "1", "--tariff", "/nonexistent/tariff.toml"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("/nonexistent/tariff.toml"), "{e}");
    let o = simulate(&["--days", "1", "--tariff", TOU, "--pv-kwp=-3"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--pv-kwp = -3"), "{e}");
    let o = simulate(&["--days", "0", "--tariff", TOU]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--days = 0"), "{e}");
    let o = simulate(&["--days", "1", "--tariff", TOU, "--faults", "random"]);
    assert!(!o.status.success(), "--faults does not go with --tariff");
}
