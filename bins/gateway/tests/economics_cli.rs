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

const DYNAMIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tariffs/dynamic.toml");

#[test]
fn the_perfect_foresight_case_is_reported_beside_the_ems_and_costs_no_more_than_self_consumption() {
    // Two winter days, when the plan has something to do (grid charging at cheap hours).
    let o = simulate(&["--days", "2", "--start-day", "10", "--tariff", DYNAMIC, "--report", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["violations"], 0, "{v}");
    // The existing keys stay.
    assert!(v["savings"]["total"]["vs_self_consumption"]["amount"].is_number(), "{v}");
    let pf = &v["perfect_foresight"];
    assert_eq!(pf["plans"], 2 * 96, "{pf}");
    let total = &pf["total"];
    for key in
        ["perfect_foresight", "ems", "self_consumption", "no_battery", "pf_vs_self_consumption", "capture"]
    {
        assert!(total.get(key).is_some(), "missing {key}: {total}");
    }
    assert_eq!(pf["months"][0]["period"], "2018-01");
    let cost = |k: &str| total[k].as_f64().unwrap();
    // The same loop told the truth is never worse than self-consumption (a cent of slack for
    // the 1 s variation inside a quarter-hour that no plan sees).
    assert!(cost("perfect_foresight") <= cost("self_consumption") + 0.01, "{total}");
    assert_eq!(total["ems"], v["savings"]["total"]["ems"]);
    // The text report states it too.
    let o = simulate(&["--days", "1", "--start-day", "10", "--tariff", DYNAMIC]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("perfect foresight") && text.contains("capture"), "{text}");
}

#[test]
fn diagnosis_flags_are_checked_and_named() {
    let o = simulate(&["--days", "1", "--tariff", TOU, "--foresight", "pv,weather"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("weather"), "{e}");
    let o = simulate(&["--days", "1", "--tariff", TOU, "--replan-every", "0"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--replan-every = 0"), "{e}");
    let o = simulate(&[
        "--days",
        "1",
        "--tariff",
        TOU,
        "--foresight",
        "load",
        "--no-perfect-foresight",
        "--report",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ems_foresight"], "load");
    assert!(v["perfect_foresight"].is_null(), "{v}");
}
