//! `ems-sim simulate`: the same flags and reports as `ems-gateway simulate` (scenarios, the
//! economics run, the simulated site with faults), and clear errors for bad flags.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use std::process::{Command, Output, Stdio};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ems-sim"))
        .arg("simulate")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn simulate_a_day_with_standard_faults_reports_zero_violations() {
    let o = sim(&["--days", "1", "--seed", "5", "--faults", "standard", "--report", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["violation_count"], 0, "{v}");
    assert_eq!(v["seed"], 5);
    assert!(v["faults_injected"].as_u64().unwrap() > 0, "{v}");
    let o = sim(&["--days", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("violations: 0"), "{}", text(&o));
}

#[test]
fn simulate_runs_a_scenario_file() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testing/scenarios/h07_estop.toml");
    let o = sim(&["--scenario", file, "--report", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], true, "{v}");
}

#[test]
fn simulate_with_a_tariff_runs_the_economics() {
    let tou = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tariffs/tou.toml");
    let o = sim(&["--days", "1", "--tariff", tou, "--report", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.is_object(), "{v}");
}

#[test]
fn bad_flags_are_refused_naming_the_command_flag_and_value() {
    let o = sim(&["--days", "1", "--faults", "lots"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("ems-sim simulate") && t.contains("--faults") && t.contains("lots"), "{t}");
    let o = sim(&["--days", "0"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--days must be at least 1 (got 0)"), "{}", text(&o));
    let o = sim(&[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--days"), "{}", text(&o));
    let o = sim(&["--days", "1", "--tariff", "/nonexistent/tariff.toml"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/tariff.toml"), "{}", text(&o));
    let tariff = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tariffs/tou.toml");
    let o = sim(&["--days", "1", "--tariff", tariff, "--end-value", "1.5"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("--end-value") && t.contains("1.5"), "{t}");
    let o = sim(&["--days", "1", "--tariff", tariff, "--end-value-scale", "3"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("--end-value-scale") && t.contains("3"), "{t}");
}
