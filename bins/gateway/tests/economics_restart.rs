//! What live economics learned survives a restart (issue #12): the simulated site with
//! `--economics` and a database runs an hour of site time and stops gracefully; a second run on
//! the same database restores the learned state (audited) and its cost ledger goes on from
//! where the first one ended instead of starting from nothing.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod support;

use support::Gateway;

const ECONOMICS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/economics/sim.toml");

/// Start the simulated site with live economics at 300× on a 1 s cycle from `hour` on the same
/// day, for `seconds` of site time, with its state and database in `dir`.
fn start(dir: &std::path::Path, hour: &str, seconds: &str) -> Gateway {
    let db = dir.join("ems.db");
    let args = [
        "--economics",
        ECONOMICS,
        "--start-day",
        "152",
        "--start-hour",
        hour,
        "--speed",
        "300",
        "--cycle-ms",
        "1000",
        "--duration",
        seconds,
        "--api-db",
        db.to_str().unwrap(),
    ];
    support::spawn(&args, dir.join("gateway.state").to_str().unwrap())
}

fn get(addr: &str, token: &str, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    if !raw.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1).ok()
}

/// The no-battery baseline's grid energy today (import + export): what the site's load and PV
/// exchanged with the grid, counted from the measured meters.
fn baseline_import(addr: &str, token: &str) -> Option<f64> {
    let v = get(addr, token, "/api/v1/savings?period=day")?;
    Some(v["no_battery"]["import_kwh"].as_f64()? + v["no_battery"]["export_kwh"].as_f64()?)
}

#[test]
fn the_learned_state_and_the_ledger_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Run 1: 08:00 to 09:00 site time.
    let mut g = start(dir.path(), "8", "3600");
    let mut first = 0.0_f64;
    let limit = Instant::now() + Duration::from_secs(90);
    while g.running() {
        assert!(Instant::now() < limit, "run 1 did not end");
        if let Some(kwh) = baseline_import(&g.addr, &g.token) {
            first = first.max(kwh);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(g.wait(Duration::from_secs(1)).success());
    assert!(first > 0.05, "run 1 recorded no energy: {first} kWh");

    // Run 2: from 10:00 on the same day, same database.
    let g = start(dir.path(), "10", "600");
    let (addr, token) = (g.addr.clone(), g.token.clone());
    let mut second = None;
    let mut restored = false;
    let limit = Instant::now() + Duration::from_secs(60);
    while second.is_none() || !restored {
        assert!(Instant::now() < limit, "run 2: no savings or no restore audit (savings {second:?})");
        // The learned state is restored as the planner starts, which may be just after the
        // API answers its first request.
        restored = restored
            || get(&addr, &token, "/api/v1/audit?kind=economics.restore").is_some_and(|v| {
                v["entries"].as_array().is_some_and(|e| e.iter().any(|e| e["outcome"] == "ok"))
            });
        if restored {
            second = second.or_else(|| baseline_import(&addr, &token));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = second.unwrap();
    // A fresh ledger would start near zero at 10:00; the restored one holds the first hour.
    assert!(second >= first - 1e-6, "the ledger restarted: {second} kWh after {first} kWh");
}
