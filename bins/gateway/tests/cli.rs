//! End-to-end tests of the `ems-gateway` binary: the `simulate` command, persistence across a
//! "reboot" (STOPPED stays STOPPED until a reset with a reason), Ctrl-C → graceful shutdown,
//! and clear errors for bad flags.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn simulate_a_week_with_faults_has_zero_hard_limit_violations() {
    let o = run(gateway()
        .args(["simulate", "--days", "7", "--seed", "5", "--faults", "standard", "--report", "json"]));
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["violation_count"], 0, "{v}");
    assert_eq!(v["seed"], 5);
    assert!(v["simulated_seconds"].as_f64().unwrap() >= 7.0 * 86_400.0);
    assert!(v["faults_injected"].as_u64().unwrap() >= 35);
    assert!(
        v["extremes"]["cell_voltage_max_v"]["max"].as_f64().unwrap()
            < v["hard_limits"]["cell_v_high"].as_f64().unwrap()
    );
    assert!(v["energy_kwh"]["pv"].as_f64().unwrap() > 10.0);
}

#[test]
fn simulate_text_summary_names_the_safety_quantities() {
    let o = run(gateway().args(["simulate", "--days", "1", "--faults", "standard"]));
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in
        ["energy (kWh)", "cell voltage max", "cell temp max", "pack current", "limit events", "violations: 0"]
    {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn bad_flags_are_refused_naming_flag_and_value() {
    let o = run(gateway().args(["simulate", "--days", "1", "--faults", "lots"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("--faults") && text(&o).contains("lots"), "{}", text(&o));
    let o = run(gateway().args(["--speed=-3", "--duration", "1"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("--speed") && text(&o).contains("-3"), "{}", text(&o));
}

fn live(state: &Path, extra: &[&str]) -> Output {
    let mut cmd = gateway();
    cmd.args(["--speed", "1000", "--duration", "30", "--api-listen", "127.0.0.1:0", "--state-file"])
        .arg(state)
        .args(extra);
    run(&mut cmd)
}

#[test]
fn live_run_reaches_running_and_persists_after_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ems.state");
    let o = live(&state, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("IDLE -> RUNNING"), "{out}");
    assert!(out.contains("graceful shutdown complete"), "{out}");
    assert!(out.contains("shutdown: Complete, state IDLE"), "{out}");
    // The device layer ran: pre-charge, the inverter lease, and its release at the end.
    assert!(out.contains("Pre-charge done"), "{out}");
    assert!(out.contains("EMS took control of the inverter"), "{out}");
    assert!(out.contains("control released: inverter settings restored"), "{out}");
    assert!(out.contains("] IDLE     SOC"), "status line missing: {out}");
    assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "ems-state v1 IDLE");
}

#[test]
fn reboot_in_stopped_comes_back_stopped_until_reset_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ems.state");
    std::fs::write(&state, "ems-state v1 STOPPED\n").unwrap();
    let o = live(&state, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("BOOT -> STOPPED: restored after reboot"), "{out}");
    assert!(!out.contains("-> RUNNING"), "must not run without a reset: {out}");
    assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "ems-state v1 STOPPED");

    let o = live(&state, &["--reset-reason", "inspected the cabinet"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("STOPPED -> IDLE: reset"), "{out}");
    assert!(out.contains("inspected the cabinet"), "reason must be audited: {out}");
    assert!(out.contains("IDLE -> RUNNING"), "{out}");
}

#[test]
fn corrupt_state_file_is_kept_and_the_gateway_starts_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ems.state");
    std::fs::write(&state, "garbage\n").unwrap();
    let o = live(&state, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("ems.state.corrupt"), "{out}");
    assert!(!out.contains("-> RUNNING"), "{out}");
    assert_eq!(std::fs::read_to_string(dir.path().join("ems.state.corrupt")).unwrap(), "garbage\n");
}

#[test]
fn ctrl_c_shuts_down_gracefully_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ems.state");
    let child = gateway()
        .args(["--speed", "20", "--api-listen", "127.0.0.1:0", "--state-file"])
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it boot and start charging (2 s wall = 40 s simulated).
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Ctrl-C"), "{out}");
    assert!(out.contains("graceful shutdown complete"), "{out}");
    assert!(std::fs::read_to_string(&state).unwrap().starts_with("ems-state v1 "), "{out}");
}

#[test]
fn simulate_runs_a_scenario_file_and_reports_its_expectations() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testing/scenarios/h07_estop.toml");
    let o = run(gateway().args(["simulate", "--scenario", file, "--report", "json"]));
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(v["report"]["hard_limit_violations"], 0, "{v}");
}

#[test]
fn a_bad_scenario_file_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "name = \"x\"\nduration = \"1x\"\n").unwrap();
    let o = run(gateway().args(["simulate", "--scenario"]).arg(&file));
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("bad.toml") && t.contains("duration") && t.contains("1x"), "{t}");
}

#[test]
fn random_faults_report_zero_hard_limit_violations() {
    let o =
        run(gateway()
            .args(["simulate", "--days", "2", "--faults", "random", "--seed", "3", "--report", "json"]));
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hard_limit_violations"], 0, "{v}");
    assert_eq!(v["invariant_violations"], 0, "{v}");
    assert_eq!(v["lease_violations"], 0, "{v}");
    assert!(v["faults_injected"].as_u64().unwrap() > 0);
}

#[test]
fn check_config_accepts_the_example_and_names_file_line_field_value_of_errors() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml");
    let o = run(gateway().args(["check-config", example]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ok"), "{}", text(&o));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("site.toml");
    let good = std::fs::read_to_string(example).unwrap();
    // Keep the profile path valid from the temporary folder.
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
    let text_bad = good
        .replace("../devices/profiles/eastron-sdm630.toml", profile)
        .replace("grid_import_limit_w = 17250", "grid_import_limit_w = -1");
    std::fs::write(&bad, text_bad).unwrap();
    let o = run(gateway().arg("check-config").arg(&bad));
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("site.toml line 13: limits.grid_import_limit_w: -1 W is outside"), "{t}");
}

#[test]
fn run_with_an_unreachable_inverter_fails_naming_the_device_and_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml")).unwrap();
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.toml");
    let site = example
        .replace("../devices/profiles/eastron-sdm630.toml", profile)
        .replace("modbus-tcp://192.168.1.50:502", &format!("modbus-tcp://127.0.0.1:{port}"));
    std::fs::write(&file, site).unwrap();
    let o = run(gateway().args(["run", "--duration", "1", "--config"]).arg(&file));
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains(&format!("devices.inverter at modbus-tcp://127.0.0.1:{port}")), "{t}");
}
