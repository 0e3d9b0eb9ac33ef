//! OCPP 1.6J interoperability: the central system against an independent charge point, the
//! PyPI `ocpp` package driving a simulated charger over a real WebSocket
//! (tests/ocpp/charge_point.py). Needs `EMS_PYTHON` with `ocpp` and `websockets` importable
//! (scripts/test installs them); skipped with a message otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use ems_core::Millis;
use ems_devices::evse::ocpp::{CentralSystem, CentralSystemConfig, OcppEvse};
use ems_devices::evse::safe::EvseFault;
use ems_devices::evse::{DeciAmps, Evse, EvseEvent, EvseStatus, SafeEvse, SafeEvseConfig};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The Python with `ocpp` and `websockets`, or `None` after saying why the test is skipped.
fn python() -> Option<String> {
    let py = match std::env::var("EMS_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            eprintln!("skipped: EMS_PYTHON is not set (scripts/test installs the ocpp package and sets it)");
            return None;
        }
    };
    let ok = std::process::Command::new(&py)
        .args(["-c", "import ocpp, websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(py)
    } else {
        eprintln!("skipped: `import ocpp, websockets` fails for EMS_PYTHON={py}");
        None
    }
}

struct ChargePoint {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<Value>,
}

impl ChargePoint {
    fn start(py: &str, cs: &CentralSystem, id: &str, extra: &[&str]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ocpp/charge_point.py");
        let url = format!("ws://{}", cs.local_addr());
        let mut child = Command::new(py)
            .arg(script)
            .args(["--url", &url, "--id", id])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { _child: child, lines, seen: Vec::new() }
    }

    /// The first line (from now on) whose `event` is `name` and that satisfies `pred`.
    async fn wait(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let fut = async {
            loop {
                let line = self.lines.next_line().await.unwrap().unwrap_or_else(|| {
                    panic!("charge point exited while waiting for {name}; saw {:?}", self.seen.last())
                });
                let v: Value = serde_json::from_str(&line).unwrap();
                self.seen.push(v.clone());
                if v["event"] == name && pred(&v) {
                    return v;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .unwrap_or_else(|_| panic!("timeout waiting for {name}"))
    }
}

/// Heartbeat every second; limits last `lease_secs` unless renewed.
fn config(lease_secs: u32) -> CentralSystemConfig {
    CentralSystemConfig {
        heartbeat_interval_secs: 1,
        call_timeout: Duration::from_secs(5),
        lease_secs,
        zero_grace: Millis::new(1000),
        ..CentralSystemConfig::default()
    }
}

async fn bind(cfg: CentralSystemConfig) -> CentralSystem {
    CentralSystem::bind("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap()
}

/// Poll `cond` on the charge point's state until it holds.
async fn until(cs: &CentralSystem, id: &str, what: &str, cond: impl Fn(&OcppEvse) -> bool) -> OcppEvse {
    for _ in 0..400 {
        if let Some(cp) = cs.charge_point(id) {
            if cond(&cp) {
                return cp;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timeout waiting for {what}; events: {:?}", cs.drain_events());
}

fn deci(a: f32) -> DeciAmps {
    DeciAmps::try_from_amps(a).unwrap()
}

/// Booted, the fallback profiles installed, a car plugged in and a transaction started.
async fn charging(cs: &CentralSystem, cp: &mut ChargePoint, id: &str) -> OcppEvse {
    let boot = cp.wait("boot", |_| true).await;
    assert_eq!(boot["status"], "Accepted");
    assert_eq!(boot["interval"], 1);
    let evse = until(cs, id, "fallback profiles", |e| e.state().fallback_installed).await;
    let mut e2 =
        until(cs, id, "plugged", |e| e.state().connector_status.as_deref() == Some("Preparing")).await;
    assert_eq!(e2.read().await.unwrap().status, EvseStatus::Plugged);
    evse.remote_start("TAG-1").await.unwrap();
    let started = cp.wait("started", |_| true).await;
    assert_eq!(started["auth"], "Accepted");
    let mut e3 = until(cs, id, "charging", |e| {
        e.state().transaction.is_some() && e.state().connector_status.as_deref() == Some("Charging")
    })
    .await;
    assert_eq!(e3.read().await.unwrap().status, EvseStatus::Charging);
    evse
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_heartbeat_transaction_and_a_profile_following_pv_surplus() {
    let Some(py) = python() else { return };
    let cs = bind(config(60)).await;
    let mut cp = ChargePoint::start(&py, &cs, "cp-pv", &["--meter-interval", "0.3"]);
    let connected = cp.wait("connected", |_| true).await;
    assert_eq!(connected["subprotocol"], "ocpp1.6");
    let evse = charging(&cs, &mut cp, "cp-pv").await;
    cp.wait("heartbeat", |_| true).await;
    until(&cs, "cp-pv", "a heartbeat", |e| e.state().heartbeats >= 1).await;

    // The loadpoint's path: SafeEvse over the OCPP charge point, fed by a simulated PV surplus
    // on three phases (surplus / (3 × 230 V)); every limit is verified by GetCompositeSchedule.
    let safe_cfg = SafeEvseConfig { write_min_interval: Millis::ZERO, ..SafeEvseConfig::default() };
    let mut safe = SafeEvse::new(evse.clone(), safe_cfg).unwrap();
    let t0 = cs.now();
    for (i, (surplus_w, expect_a)) in
        [(4140.0_f32, 6.0_f32), (6900.0, 10.0), (9660.0, 14.0), (13_800.0, 16.0), (2000.0, 0.0)]
            .into_iter()
            .enumerate()
    {
        let request = deci(surplus_w / 690.0);
        let now = t0.plus(Millis::from_secs(u64::try_from(i).unwrap()));
        let kept = safe.command(now, request).await.unwrap();
        assert_eq!(kept, deci(expect_a), "surplus {surplus_w} W");
        assert_eq!(evse.state().verified, Some(deci(expect_a)), "GetCompositeSchedule confirms {expect_a} A");
        let composite = cp.wait("composite", |_| true).await;
        assert!((composite["limit"].as_f64().unwrap() - f64::from(expect_a)).abs() < 1e-6);
        let power = f64::from(expect_a) * 690.0;
        cp.wait("meter", |v| (v["power"].as_f64().unwrap() - power).abs() < 1.0).await;
        let want = power;
        let mut e = until(&cs, "cp-pv", "meter values", move |e| {
            e.state().power.is_some_and(|p| (p - want).abs() < 1.0)
        })
        .await;
        let r = e.read().await.unwrap();
        assert_eq!(r.applied_limit, deci(expect_a));
        assert!((r.current[0].get() - expect_a).abs() < 0.05, "{r:?}");
    }
    let mut e = evse.clone();
    assert!(e.read().await.unwrap().session_energy.get() > 0.0, "session energy counted");
    assert!(safe.fault().is_none());

    evse.remote_stop().await.unwrap();
    cp.wait("stopped", |_| true).await;
    until(&cs, "cp-pv", "transaction stopped", |e| e.state().transaction.is_none()).await;
    let events: Vec<EvseEvent> = cs.drain_events().into_iter().map(|(_, e)| e).collect();
    for want in
        ["OcppConnected", "OcppBooted", "OcppStatus", "OcppTransactionStarted", "OcppTransactionStopped"]
    {
        assert!(events.iter().any(|e| format!("{e:?}").starts_with(want)), "{want} in {events:?}");
    }
    assert!(!events.iter().any(|e| matches!(e, EvseEvent::OcppProfileNotApplied { .. })), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, EvseEvent::OcppCallError { .. })), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_loss_leaves_the_fallback_profile_in_force() {
    let Some(py) = python() else { return };
    let cs = bind(config(2)).await;
    let mut cp = ChargePoint::start(&py, &cs, "cp-loss", &["--meter-interval", "0.3", "--linger", "4"]);
    let mut evse = charging(&cs, &mut cp, "cp-loss").await;
    evse.set_current_limit(deci(12.0)).await.unwrap();
    cp.wait("meter", |v| v["limit"] == 12.0).await;

    cs.disconnect("cp-loss");
    cp.wait("link_lost", |_| true).await;
    until(&cs, "cp-loss", "offline", |e| !e.is_online()).await;
    assert!(evse.read().await.is_err(), "an offline charge point has no reading");
    assert!(evse.set_current_limit(deci(16.0)).await.is_err(), "no command reaches it");
    // Its TxProfile ran out after one lease (2 s): the fallback TxDefaultProfile (6 A) applies.
    let last = cp.wait("offline_limit", |_| true).await;
    assert_eq!(last["limit"], 6.0, "fallback profile in force at the charge point");
    let offline_limits: Vec<f64> =
        cp.seen.iter().filter(|v| v["event"] == "offline").map(|v| v["limit"].as_f64().unwrap()).collect();
    assert_eq!(offline_limits.last(), Some(&6.0), "{offline_limits:?}");
    let events = cs.drain_events();
    assert!(
        events.iter().any(|(_, e)| matches!(e, EvseEvent::OcppOffline { id, .. } if id == "cp-loss")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_point_that_ignores_zero_amps_is_detected_and_reported() {
    let Some(py) = python() else { return };
    let cs = bind(config(60)).await;
    let mut cp =
        ChargePoint::start(&py, &cs, "cp-zero", &["--meter-interval", "0.3", "--mode", "ignore-zero"]);
    let evse = charging(&cs, &mut cp, "cp-zero").await;
    let safe_cfg = SafeEvseConfig {
        verify_window: Millis::new(1000),
        write_min_interval: Millis::ZERO,
        ..SafeEvseConfig::default()
    };
    let mut safe = SafeEvse::new(evse.clone(), safe_cfg).unwrap();
    let t0 = cs.now();
    safe.command(t0, deci(10.0)).await.unwrap();
    cp.wait("meter", |v| v["current"] == 10.0).await;

    // 0 A is accepted and verified by GetCompositeSchedule, yet the car keeps drawing 10 A.
    safe.command(t0.plus(Millis::new(100)), DeciAmps::ZERO).await.unwrap();
    assert_eq!(evse.state().verified, Some(DeciAmps::ZERO));
    cp.wait("meter", |v| v["limit"] == 0.0 && v["current"] == 10.0).await;
    until(&cs, "cp-zero", "zero ignored", OcppEvse::zero_ignored).await;
    let events = cs.drain_events();
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, EvseEvent::OcppZeroIgnored { power, .. } if power.get() > 6000.0)),
        "{events:?}"
    );
    // The wrapper sees it too, from the measured currents.
    for k in 0..30_u64 {
        let _ = safe.poll(cs.now()).await;
        if safe.fault().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 + k)).await;
    }
    assert_eq!(safe.fault(), Some(EvseFault::ZeroIgnored));
    let wrapper_events = safe.drain_events();
    assert!(
        wrapper_events.iter().any(|(_, e)| matches!(e, EvseEvent::ZeroIgnored { .. })),
        "{wrapper_events:?}"
    );
}
