//! Signals and shutdown on a real site (issue #10): `ems-gateway run --config` against the
//! Modbus-served loopback site (`SunSpecSite`), discharging 2 kW, then
//! - SIGTERM (what `systemctl stop` and `docker stop` send) and SIGINT (Ctrl-C) each start the
//!   graceful shutdown: ramp to zero in wall time, contactors opened and verified, final state
//!   IDLE persisted, no false "welded" (the old loop raced control time ahead of wall time after
//!   Ctrl-C and checked the contactor feedback 16 ms after the open command);
//! - a second signal forces zero power and open contactors at once;
//! - `kill -9`, then a restart: the audit log records "unclean shutdown detected".
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/loopback.rs"]
mod loopback;

use ems_core::snapshot::ContactorState;
use ems_devices::sim::SimulatedSite;
use std::io::Read;
use std::process::{Child, ExitStatus};
use std::time::Duration;

fn signal(child: &Child, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{name} failed");
}

/// What the simulator saw.
#[derive(Debug, Default)]
struct Seen {
    /// When the signals were sent (since the start).
    signalled: Vec<Duration>,
    /// Battery power at the first signal, W.
    power_at_signal: f32,
    /// When the battery reached zero after the first signal.
    zero_at: Option<Duration>,
    /// Contactor state and battery power at the end.
    end: Option<(ContactorState, f32)>,
}

/// Run the site discharging 2 kW; once it delivers, send `signals` (one name each, `gap` apart).
fn run(signals: &[&'static str], gap: Duration) -> (ExitStatus, String, Seen, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, stdout, seen) = runtime.block_on(async {
        let (site, mut served, server, config) = loopback::serve_site(dir.path(), loopback::MANUAL_2KW).await;
        let mut child = loopback::spawn_gateway(&config, &[]);
        let mut seen = Seen::default();
        let status = loopback::drive(
            &site,
            &mut served,
            &mut child,
            Duration::from_secs(90),
            |elapsed, site, child| {
                let t = site.with(SimulatedSite::truth);
                let power = t.battery_power.get();
                let due = match seen.signalled.last() {
                    None => power > 1900.0 && elapsed > Duration::from_secs(4),
                    Some(last) => seen.signalled.len() < signals.len() && elapsed >= *last + gap,
                };
                if due {
                    if seen.signalled.is_empty() {
                        seen.power_at_signal = power;
                    }
                    signal(child, signals[seen.signalled.len()]);
                    seen.signalled.push(elapsed);
                }
                if !seen.signalled.is_empty() && seen.zero_at.is_none() && power.abs() < 50.0 {
                    seen.zero_at = Some(elapsed);
                }
            },
        )
        .await;
        // What the last writes did (the driver synced them after the exit).
        for _ in 0..3 {
            served.sync();
            site.with_mut(|s| s.advance(ems_core::Millis::new(100)));
        }
        let t = site.with(SimulatedSite::truth);
        seen.end = Some((t.contactor, t.battery_power.get()));
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        drop(server);
        (status, stdout, seen)
    });
    (status, stdout, seen, dir)
}

fn graceful(name: &'static str) {
    let (status, stdout, seen, dir) = run(&[name], Duration::ZERO);
    assert!(status.success(), "{name}: gateway failed: {status}\n{stdout}");
    assert!(seen.power_at_signal > 1900.0, "{name}: {seen:?}");
    assert!(stdout.contains("shutting down gracefully"), "{name}: signal not announced:\n{stdout}");
    assert!(stdout.contains("shutdown: Complete, state IDLE"), "{name}: shutdown not verified:\n{stdout}");
    assert!(!stdout.to_lowercase().contains("weld"), "{name}: false weld:\n{stdout}");
    let (contactor, power) = seen.end.unwrap();
    assert_eq!(contactor, ContactorState::Open, "{name}: contactors open at the end: {seen:?}");
    assert!(power.abs() < 50.0, "{name}: zero power at the end: {seen:?}");
    // The ramp to zero took wall time (2 kW at the site file's 2.5 kW/s), not 20 ms.
    let signalled = seen.signalled[0];
    let ramp = seen.zero_at.unwrap().saturating_sub(signalled);
    eprintln!("{name}: 2 kW → 0 W in {ramp:?} of wall time after the signal");
    let state = std::fs::read_to_string(dir.path().join("gateway.state")).unwrap();
    assert!(state.contains("IDLE"), "{name}: persisted {state}");
    assert!(!dir.path().join("gateway.state.running").exists(), "{name}: run marker left behind");
    assert!(stdout.contains("control released"), "{name}: no release:\n{stdout}");
}

#[test]
fn sigterm_ramps_down_opens_the_contactors_and_ends_idle_without_a_false_weld() {
    graceful("TERM");
}

#[test]
fn sigint_ramps_down_opens_the_contactors_and_ends_idle_without_a_false_weld() {
    graceful("INT");
}

#[test]
fn a_second_signal_forces_zero_and_open_at_once() {
    let (status, stdout, seen, _dir) = run(&["TERM", "TERM"], Duration::from_millis(100));
    assert!(status.success(), "gateway failed: {status}\n{stdout}");
    assert!(stdout.contains("forcing zero power and open contactors now"), "{stdout}");
    assert!(stdout.contains("shutdown: Forced"), "{stdout}");
    let (contactor, power) = seen.end.unwrap();
    assert_eq!(contactor, ContactorState::Open, "{seen:?}\n{stdout}");
    assert!(power.abs() < 50.0, "{seen:?}\n{stdout}");
}

#[test]
fn kill_9_then_restart_records_an_unclean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (site, mut served, server, config) = loopback::serve_site(dir.path(), loopback::MANUAL_2KW).await;
        // First run: killed with SIGKILL once it controls the site.
        let mut child = loopback::spawn_gateway(&config, &[]);
        let mut killed = false;
        let _ = loopback::drive(&site, &mut served, &mut child, Duration::from_secs(60), |_, site, child| {
            if !killed && site.with(SimulatedSite::truth).contactor == ContactorState::Closed {
                child.kill().unwrap();
                killed = true;
            }
        })
        .await;
        assert!(killed, "the first run never closed the contactor");
        assert!(dir.path().join("gateway.state.running").exists(), "no run marker after kill -9");
        // Second run: a short one that ends cleanly.
        let mut child = loopback::spawn_gateway(&config, &["--duration", "3"]);
        let status =
            loopback::drive(&site, &mut served, &mut child, Duration::from_secs(60), |_, _, _| {}).await;
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        assert!(status.success(), "{stdout}");
        drop(server);
    });
    let db = ems_api::db::Db::open(dir.path().join("ems.db")).unwrap();
    let log = ems_api::ports::AuditSink::recent(&db, 10_000).unwrap();
    assert!(
        log.iter().any(|e| e.action.contains("unclean shutdown detected")),
        "{:?}",
        log.iter().map(|e| &e.action).collect::<Vec<_>>()
    );
    assert!(!dir.path().join("gateway.state.running").exists(), "the clean run removed the marker");
}

/// `GET path` with the site file's token; the body.
fn get(addr: &str, path: &str) -> String {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        loopback::TOKEN
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn unreachable_devices_the_api_answers_waiting_for_devices_and_a_clean_end_leaves_no_marker() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: every Modbus connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("site.toml");
    let file = loopback::site_file(port, loopback::MANUAL_2KW);
    let api = file
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"").and_then(|r| r.strip_suffix('"')))
        .unwrap()
        .to_owned();
    std::fs::write(&config, file).unwrap();
    let mut child = loopback::spawn_gateway(&config, &[]);
    // The API is up before the devices, and says why there is no control.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let answer = std::net::TcpStream::connect(&api).map(|_| get(&api, "/api/v1/safety"));
        if let Ok(a) = answer {
            if a.contains("\"ready\":false") && a.contains("waiting for devices") {
                break a;
            }
        }
        assert!(std::time::Instant::now() < until, "no 'waiting for devices' from the API");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.to_lowercase().contains("refused"), "the cause is named: {body}");
    // A shutdown while waiting: nothing was ever controlled, so the end is clean.
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(!status.success(), "never reached its devices: the run fails");
    assert!(!dir.path().join("gateway.state.running").exists(), "no unclean-shutdown marker left behind");
}
