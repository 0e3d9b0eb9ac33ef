//! The gateway binary end to end over real Modbus TCP on loopback (issue #4): `ems-gateway run
//! --config site.toml` against the simulated site served by `SunSpecSite` — SunSpec inverter
//! (unit 1) and battery (unit 2), the SDM630 meter by its shipped profile (unit 3), and the
//! contactor relays and the E-stop loop on a Modbus I/O module (unit 4). Nothing is simulated on
//! the gateway's side: it is the released binary with a site file, as an installer runs it.
//!
//! The test process owns the simulator: it advances the physics in wall-clock time (100 ms
//! steps) and syncs the register images, while the gateway, a separate process, polls and writes
//! over TCP. The run: start → pre-charge → RUNNING discharging at the manual set-point; E-stop
//! pressed on the I/O module → zero power, contactors open, STOPPED; end of `--duration` →
//! graceful shutdown, STOPPED persisted, the inverter's own settings restored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ems_core::snapshot::ContactorState;
use ems_core::Millis;
use ems_devices::sim::{SharedSite, SimFault, SimSiteConfig, SimulatedSite};
use ems_devices::traits::{ControlSource, Inverter};
use ems_testing::sunspec_site::{
    SunSpecSite, IO_ESTOP_BIT, IO_INPUTS, IO_MAIN_COIL, IO_MAIN_FEEDBACK_BIT, IO_PRECHARGE_COIL,
    IO_PRECHARGE_FEEDBACK_BIT, IO_UNIT,
};

const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");

/// The API token of the site file (its SHA-256 is in `[[api.tokens]]`).
const TOKEN: &str = "loopback-test-token-0123456789abcdef";

fn site_file(port: u16) -> String {
    let ep = format!("modbus-tcp://127.0.0.1:{port}");
    // The site file takes ports 1..=65535 only: a free one picked now.
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hash = ems_api::auth::hash_token(TOKEN);
    format!(
        r#"[site]
name = "loopback site"
cycle_ms = 100
state_file = "gateway.state"

[limits]
grid_import_limit_w = 17250
grid_export_limit_w = 10000

[mode]
kind = "manual"
setpoint_w = 2000

[devices.inverter]
endpoint = "{ep}"
unit = 1
driver = "sunspec"
timeout_ms = 300

[devices.battery]
endpoint = "{ep}"
unit = 2
driver = "sunspec"
timeout_ms = 300
assumed_cell_temp_c = 25

[devices.meter]
endpoint = "{ep}"
unit = 3
driver = "profile"
profile = "{PROFILE}"
timeout_ms = 300

[devices.contactor]
kind = "modbus"
endpoint = "{ep}"
unit = {IO_UNIT}
timeout_ms = 300
precharge_coil = {IO_PRECHARGE_COIL}
main_coil = {IO_MAIN_COIL}
feedback_register = {IO_INPUTS}
precharge_feedback_bit = {IO_PRECHARGE_FEEDBACK_BIT}
main_feedback_bit = {IO_MAIN_FEEDBACK_BIT}

[devices.estop]
kind = "modbus"
endpoint = "{ep}"
unit = {IO_UNIT}
timeout_ms = 300
register = {IO_INPUTS}
bit = {IO_ESTOP_BIT}
active = "low"
poll_ms = 10

[api]
listen = "127.0.0.1:{api_port}"
database = "ems.db"
battery_serials = ["sim-bms-1"]
schedule_max_power_w = 5000

[[api.tokens]]
name = "test"
role = "admin"
sha256 = "{hash}"
"#
    )
}

/// What the simulator saw while the gateway ran.
#[derive(Debug, Default)]
struct Seen {
    max_discharge_w: f32,
    contactor_closed_at: Option<Duration>,
    /// Contactor state and battery power 500 ms after the E-stop press.
    after_estop: Option<(ContactorState, f32)>,
}

#[test]
fn gateway_runs_a_modbus_site_end_to_end_and_stops_on_the_io_module_estop() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (seen, stdout, status, settings) = runtime.block_on(async {
        // A June noon: some PV, a household load; the battery at mid SOC.
        let config = SimSiteConfig {
            start_day_of_year: 172,
            start_time_of_day: Millis::from_secs(12 * 3600),
            seed: 9,
            ..SimSiteConfig::default()
        };
        let site = SharedSite::new(SimulatedSite::new(config).unwrap());
        let mut served = SunSpecSite::new(site.clone()).unwrap();
        let server = served.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let config_path = dir.path().join("site.toml");
        std::fs::write(&config_path, site_file(server.local_addr().port())).unwrap();

        let mut child = Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
            .args(["run", "--config"])
            .arg(&config_path)
            .args(["--duration", "14"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();

        let started = Instant::now();
        let mut last = started;
        let mut seen = Seen::default();
        let mut pressed_at: Option<Duration> = None;
        let status = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = Instant::now();
            let dt = Millis::new(u64::try_from((now - last).as_millis()).unwrap());
            last = now;
            site.with_mut(|s| s.advance(dt));
            served.sync();
            let t = site.with(SimulatedSite::truth);
            let elapsed = started.elapsed();
            seen.max_discharge_w = seen.max_discharge_w.max(t.battery_power.get());
            if t.contactor == ContactorState::Closed && seen.contactor_closed_at.is_none() {
                seen.contactor_closed_at = Some(elapsed);
            }
            // Press the E-stop once the battery has delivered its set-point for a while.
            if pressed_at.is_none() && t.battery_power.get() > 1900.0 && elapsed > Duration::from_secs(5) {
                site.with_mut(|s| s.inject(SimFault::EStopPressed));
                pressed_at = Some(elapsed);
            }
            if let Some(p) = pressed_at {
                if seen.after_estop.is_none() && elapsed >= p + Duration::from_millis(500) {
                    seen.after_estop = Some((t.contactor, t.battery_power.get()));
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if elapsed > Duration::from_secs(60) {
                child.kill().unwrap();
                let mut out = String::new();
                child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                panic!("the gateway did not end its 14 s run:\n{out}");
            }
        };
        // One more sync so the release's writes reach the simulated inverter.
        served.sync();
        let settings = site.inverter().read_settings().await.unwrap();
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        drop(server);
        (seen, stdout, status, settings)
    });

    assert!(status.success(), "gateway failed: {status}\n{stdout}");
    assert!(stdout.contains("RUNNING"), "never RUNNING:\n{stdout}");
    assert!(seen.contactor_closed_at.is_some(), "the contactor never closed over Modbus:\n{stdout}");
    assert!(
        seen.max_discharge_w > 1900.0,
        "the manual set-point never reached the battery: {seen:?}\n{stdout}"
    );
    let (contactor, power) = seen.after_estop.expect("E-stop pressed and observed");
    assert_eq!(contactor, ContactorState::Open, "contactors open 500 ms after the E-stop: {seen:?}");
    assert!(power.abs() < 50.0, "zero power 500 ms after the E-stop: {power} W");
    assert!(stdout.contains("STOPPED"), "never STOPPED:\n{stdout}");
    // The control time keeps pace with the wall clock while the E-stop is held (no cycles run
    // back to back), and the graceful shutdown completes although the E-stop is still pressed.
    let last_status = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split_once(" s]").map(|(t, _)| t.trim().parse::<f32>().unwrap()))
        .fold(0.0_f32, f32::max);
    assert!(last_status < 16.0, "control time ran ahead of the 14 s run: {last_status} s\n{stdout}");
    assert!(stdout.contains("shutdown: Complete"), "shutdown not verified:\n{stdout}");
    assert!(stdout.contains("control released"), "no release:\n{stdout}");
    let state = std::fs::read_to_string(dir.path().join("gateway.state")).unwrap();
    assert!(state.contains("STOPPED"), "persisted: {state}");
    assert_eq!(settings.control, ControlSource::Local, "inverter handed back: {settings:?}");
    // The API ran with its SQLite database: the audit log holds the controller's state changes,
    // in order, and the database is intact.
    assert!(stdout.contains("API on http://127.0.0.1:"), "{stdout}");
    let db = ems_api::db::Db::open(dir.path().join("ems.db")).unwrap();
    assert_eq!(db.integrity_check().unwrap(), "ok");
    let log: Vec<String> =
        ems_api::ports::AuditSink::recent(&db, 1000).unwrap().into_iter().rev().map(|e| e.action).collect();
    let running = log.iter().position(|a| a.contains("-> RUNNING")).expect("RUNNING audited");
    let stopped = log.iter().position(|a| a.contains("RUNNING -> STOPPED")).expect("E-stop audited");
    assert!(running < stopped, "{log:?}");
}
