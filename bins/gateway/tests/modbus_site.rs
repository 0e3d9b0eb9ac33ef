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
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::time::Duration;

use ems_core::snapshot::ContactorState;
use ems_devices::sim::{SimFault, SimulatedSite};
use ems_devices::traits::{ControlSource, Inverter};

#[path = "support/loopback.rs"]
mod loopback;

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
        let (site, mut served, server, config_path) =
            loopback::serve_site(dir.path(), loopback::MANUAL_2KW).await;
        let mut child = loopback::spawn_gateway(&config_path, &["--duration", "14"]);
        let mut seen = Seen::default();
        let mut pressed_at: Option<Duration> = None;
        let status =
            loopback::drive(&site, &mut served, &mut child, Duration::from_secs(60), |elapsed, site, _| {
                let t = site.with(SimulatedSite::truth);
                seen.max_discharge_w = seen.max_discharge_w.max(t.battery_power.get());
                if t.contactor == ContactorState::Closed && seen.contactor_closed_at.is_none() {
                    seen.contactor_closed_at = Some(elapsed);
                }
                // Press the E-stop once the battery has delivered its set-point for a while.
                if pressed_at.is_none() && t.battery_power.get() > 1900.0 && elapsed > Duration::from_secs(5)
                {
                    site.with_mut(|s| s.inject(SimFault::EStopPressed));
                    pressed_at = Some(elapsed);
                }
                if let Some(p) = pressed_at {
                    if seen.after_estop.is_none() && elapsed >= p + Duration::from_millis(500) {
                        seen.after_estop = Some((t.contactor, t.battery_power.get()));
                    }
                }
            })
            .await;
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
