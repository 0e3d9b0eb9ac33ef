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

/// The example site with each `(from, to)` replaced once, its profile path made absolute and
/// `extra` appended; `check-config` on it from a temporary folder: (success, all output).
fn check_example(edits: &[(&str, &str)], extra: &str) -> (bool, String) {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml");
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
    let mut site = std::fs::read_to_string(example).unwrap();
    for (from, to) in edits {
        assert!(site.contains(from), "the example has no {from:?}");
        site = site.replacen(from, to, 1);
    }
    let mut site = site.replace("../devices/profiles/eastron-sdm630.toml", profile);
    site.push_str(extra);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(&file, site).unwrap();
    let o = run(gateway().arg("check-config").arg(&file));
    (o.status.success(), text(&o))
}

fn refused(edits: &[(&str, &str)], extra: &str, want: &[&str]) {
    let (ok, t) = check_example(edits, extra);
    assert!(!ok, "accepted {edits:?} {extra:?}: {t}");
    for w in want {
        assert!(t.contains(w), "{edits:?} {extra:?}: missing {w:?} in {t}");
    }
}

#[test]
fn check_config_refuses_gpio_wiring_conflicts() {
    // The same line for the pre-charge relay and the main contactor.
    refused(
        &[("main_line = 22", "main_line = 17")],
        "",
        &["site.toml line 63: devices.contactor.main_line: 17 is the pre-charge relay's coil line too"],
    );
    // Identical feedback lines.
    refused(
        &[("main_feedback_line = 23", "main_feedback_line = 27")],
        "",
        &["devices.contactor.main_feedback_line: 27 is the pre-charge relay's feedback line too"],
    );
    // A coil line that is a feedback line.
    refused(
        &[("precharge_feedback_line = 27", "precharge_feedback_line = 17")],
        "",
        &["devices.contactor.precharge_feedback_line: 17 is the pre-charge relay's coil line too"],
    );
    refused(
        &[("main_feedback_line = 23", "main_feedback_line = 22")],
        "",
        &["devices.contactor.main_feedback_line: 22 is the main contactor's coil line too"],
    );
    // The E-stop on a relay's coil line or feedback line of the same chip.
    refused(
        &[("line = 4\n", "line = 22\n")],
        "",
        &["devices.estop.line: 22 on /dev/gpiochip0 is the main contactor's coil line too"],
    );
    refused(
        &[("line = 4\n", "line = 27\n")],
        "",
        &["devices.estop.line: 27 on /dev/gpiochip0 is the pre-charge relay's feedback line too"],
    );
    // The same line number on another chip is another line.
    let (ok, t) = check_example(
        &[
            ("line = 4\n", "line = 22\n"),
            ("chip = \"/dev/gpiochip0\"\nline", "chip = \"/dev/gpiochip1\"\nline"),
        ],
        "",
    );
    assert!(ok, "{t}");
}

/// The example with relays and E-stop on one Modbus I/O module.
const MODBUS_IO: &str = "[devices.contactor]
kind = \"modbus\"
endpoint = \"modbus-tcp://192.168.1.60:502\"
unit = 4
precharge_coil = 0
main_coil = 1
feedback_register = 0
precharge_feedback_bit = 0
main_feedback_bit = 1

[devices.estop]
kind = \"modbus\"
endpoint = \"modbus-tcp://192.168.1.60:502\"
unit = 4
register = 0
bit = 2
";

fn modbus_io(edits: &[(&str, &str)], want: &[&str]) {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml");
    let site = std::fs::read_to_string(example).unwrap();
    let gpio =
        &site[site.find("[devices.contactor]").unwrap()..site.find("# Relays and the E-stop").unwrap()];
    let mut io = MODBUS_IO.to_owned();
    for (from, to) in edits {
        io = io.replacen(from, to, 1);
    }
    if want.is_empty() {
        let (ok, t) = check_example(&[(gpio, &io)], "");
        assert!(ok, "{t}");
    } else {
        refused(&[(gpio, &io)], "", want);
    }
}

#[test]
fn check_config_refuses_modbus_io_wiring_conflicts() {
    modbus_io(&[], &[]);
    modbus_io(&[("main_coil = 1", "main_coil = 0")], &["devices.contactor.main_coil", "pre-charge coil"]);
    modbus_io(
        &[("main_feedback_bit = 1", "main_feedback_bit = 0")],
        &["devices.contactor.main_feedback_bit: 0 is the pre-charge feedback bit too"],
    );
    // Feedback read from a coil's own holding register reads the command back, not the contact.
    modbus_io(
        &[("feedback_register = 0", "feedback_register = 1\nfeedback_table = \"holding\"")],
        &["devices.contactor.feedback_register: holding register 1 is the main contactor's coil register too"],
    );
    // The E-stop on a relay's feedback bit or coil register of the same module.
    modbus_io(
        &[("bit = 2", "bit = 1")],
        &["devices.estop.bit: bit 1 of register 0 is the main contactor's feedback bit too"],
    );
    modbus_io(
        &[("register = 0\nbit = 2", "register = 0\nbit = 0\ntable = \"holding\"")],
        &["devices.estop.register: holding register 0 is the pre-charge relay's coil register too"],
    );
    // Another module (unit id) is other wires.
    modbus_io(&[("unit = 4\nregister", "unit = 5\nregister"), ("bit = 2", "bit = 1")], &[]);
}

#[test]
fn check_config_refuses_ports_outside_1_to_65535_naming_field_and_value() {
    let inverter = "endpoint = \"modbus-tcp://192.168.1.50:502\"";
    refused(
        &[(inverter, "endpoint = \"modbus-tcp://192.168.1.50:99999\"")],
        "",
        &["line 38: devices.inverter.endpoint: port 99999 is outside 1..=65535 ('modbus-tcp://192.168.1.50:99999')"],
    );
    refused(
        &[(inverter, "endpoint = \"modbus-tcp://host:0\"")],
        "",
        &["devices.inverter.endpoint: port 0 is outside 1..=65535 ('modbus-tcp://host:0')"],
    );
    refused(
        &[],
        "\n[api]\nlisten = \"127.0.0.1:99999\"\n",
        &["api.listen: port 99999 is outside 1..=65535 ('127.0.0.1:99999')"],
    );
    refused(
        &[],
        "\n[api]\nlisten = \"0.0.0.0:0\"\n",
        &["api.listen: port 0 is outside 1..=65535 ('0.0.0.0:0')"],
    );
    modbus_io(
        &[("modbus-tcp://192.168.1.60:502", "modbus-tcp://[::1]:70000")],
        &["devices.contactor.endpoint: port 70000 is outside 1..=65535 ('modbus-tcp://[::1]:70000')"],
    );
}

#[test]
fn check_config_names_the_full_path_of_a_wrong_type_and_a_missing_section() {
    refused(
        &[("assumed_cell_temp_c = 25", "assumed_cell_temp_c = 25\npoll_ms = \"fast\"")],
        "",
        &["site.toml line 50: devices.battery.poll_ms: expected an integer, got \"fast\""],
    );
    refused(
        &[("cycle_ms = 100", "cycle_ms = 0.5")],
        "",
        &["line 9: site.cycle_ms: expected an integer, got 0.5"],
    );
    refused(
        &[("grid_import_limit_w = 17250", "grid_import_limit_w = \"17 kW\"")],
        "",
        &["limits.grid_import_limit_w: expected a number, got \"17 kW\""],
    );
    refused(&[("unit = 2", "unit = 300")], "", &["devices.meter.unit: expected an integer 0..=255, got 300"]);
    refused(&[("[devices.meter]", "[devices.metre]")], "", &["devices: unknown field `metre`"]);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml");
    let site = std::fs::read_to_string(example).unwrap();
    let meter = &site[site.find("[devices.meter]").unwrap()..site.find("[devices.contactor]").unwrap()];
    refused(&[(meter, "")], "", &["site.toml line 37: missing section [devices.meter]"]);
    let site_section = &site[site.find("[site]").unwrap()..site.find("[limits]").unwrap()];
    refused(&[(site_section, "")], "", &["missing section [site]"]);
    refused(&[("driver = \"profile\"\n", "")], "", &["devices.meter.driver: missing (required)"]);
}

#[test]
fn check_config_reads_the_new_api_and_site_keys_and_refuses_values_out_of_range() {
    const TOKEN: &str = "[[api.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"1d1e0f590d004fb7e08f456946aeac2f8035a23649d852a319291c45aa4a7410\"\n";
    let (ok, t) = check_example(&[], &format!("\n[api]\n{TOKEN}"));
    assert!(ok, "{t}");
    assert!(t.contains("zero and open forced after 30 s"), "{t}");
    for w in ["at most 256 connections", "headers within 5 s", "idle 60 s", "/metrics needs a token"] {
        assert!(t.contains(w), "missing {w:?}: {t}");
    }
    for w in [
        "300 requests/min per token and 600 per address",
        "audit log 365 days / 1000000 entries",
        "history 730 days",
    ] {
        assert!(t.contains(w), "missing {w:?}: {t}");
    }
    let keys =
        "max_connections = 64\nheader_read_timeout_s = 3\nidle_timeout_s = 30\nmetrics_public = true\n\
                audit_max_age_days = 90\naudit_max_rows = 5000\nhistory_max_age_days = 14\n\
                rate_limit_per_minute = 120\nip_rate_limit_per_minute = 240\n";
    let (ok, t) = check_example(
        &[("cycle_ms = 100", "cycle_ms = 100\nshutdown_timeout_s = 90")],
        &format!("\n[api]\n{keys}{TOKEN}"),
    );
    assert!(ok, "{t}");
    for w in [
        "after 90 s",
        "at most 64 connections, headers within 3 s, idle 30 s, /metrics public",
        "120 requests/min per token and 240 per address, audit log 90 days / 5000 entries, history 14 days",
    ] {
        assert!(t.contains(w), "missing {w:?}: {t}");
    }
    let bad = |key: &str, want: &str| refused(&[], &format!("\n[api]\n{key}\n{TOKEN}"), &[want]);
    bad("max_connections = 0", "api.max_connections: 0 is outside 1..=65535");
    bad("max_connections = 70000", "api.max_connections: 70000 is outside 1..=65535");
    bad("header_read_timeout_s = 0", "api.header_read_timeout_s: 0 s is outside 1..=300 s");
    bad("idle_timeout_s = -1", "api.idle_timeout_s: -1 s is outside 1..=3600 s");
    bad("audit_max_age_days = 0", "api.audit_max_age_days: 0 days is outside 1..=36500 days");
    bad("audit_max_rows = 10", "api.audit_max_rows: 10 is outside 1000..=1000000000");
    bad("history_max_age_days = 40000", "api.history_max_age_days: 40000 days is outside 1..=36500 days");
    bad("rate_limit_per_minute = 0", "api.rate_limit_per_minute: 0 is outside 1..=60000");
    bad("ip_rate_limit_per_minute = 0", "api.ip_rate_limit_per_minute: 0 is outside 1..=600000");
    bad("metrics_public = \"yes\"", "api.metrics_public: expected true or false, got \"yes\"");
    refused(
        &[("cycle_ms = 100", "cycle_ms = 100\nshutdown_timeout_s = 4000")],
        "",
        &["line 10: site.shutdown_timeout_s: 4000 s is outside 1..=3600 s"],
    );
    refused(
        &[("cycle_ms = 100", "cycle_ms = 100\nshutdown_timeout_s = 0")],
        "",
        &["site.shutdown_timeout_s: 0 s is outside 1..=3600 s"],
    );
}
