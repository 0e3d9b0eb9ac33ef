//! Island operation on a **real site** (issue #13 item 6): `ems-gateway run --config site.toml`
//! with `[island]` on Modbus devices, against the loopback site of the end-to-end tests plus a
//! second Modbus server that this test plays as the island plant — a grid-tie breaker (command
//! register and auxiliary contact), the inverter's grid-mode registers (command, read-back,
//! grid-side and bus measurements) and three load relays (coil and feedback contact). Nothing
//! on the gateway's side is simulated: it is the released binary with a site file.
//!
//! The run: the battery discharges 2 kW on the grid (CONNECTED); the grid-side voltage and
//! frequency fall to zero → the gateway opens the breaker, switches the inverter to
//! grid-forming, brings the critical circuits back and bounds the set-point to zero (ISLANDED;
//! the simulated battery stops discharging into the grid); the grid returns → after the
//! enter-service delay the inverter synchronises, the breaker closes and the set-point ramps
//! again (CONNECTED).
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ems_devices::modbus::transport::server::serve_memory;
use ems_devices::modbus::MemoryRegisters;
use ems_devices::sim::SimulatedSite;

#[path = "support/loopback.rs"]
mod loopback;

const BREAKER_COMMAND: u16 = 0;
const BREAKER_POSITION: u16 = 1;
const MODE_COMMAND: u16 = 10;
const MODE_READBACK: u16 = 11;
const GRID_V: u16 = 13;
const GRID_F: u16 = 14;
const BUS_V: u16 = 15;
const BUS_F: u16 = 16;
const PHASE: u16 = 17;
const AC_POWER: u16 = 18;
/// The circuits' nominal powers, W.
const NOMINAL: [u16; 3] = [300, 800, 1500];
/// Relay coils at 20, 22, 24; their feedback contacts one register above.
const RELAYS: [u16; 3] = [20, 22, 24];

fn island_section(port: u16) -> String {
    let ep = format!("modbus-tcp://127.0.0.1:{port}");
    let mut s = format!(
        r#"
[island]
enter_service_delay_s = 3
ramp_pct_per_min = 100

[island.breaker]
endpoint = "{ep}"
timeout_ms = 300
command_register = {BREAKER_COMMAND}
open_value = 0
close_value = 1
position = {{ table = "holding", register = {BREAKER_POSITION}, bit = 0 }}

[island.inverter_mode]
endpoint = "{ep}"
timeout_ms = 300
rating_w = 5000
command_register = {MODE_COMMAND}
mode = {{ table = "holding", register = {MODE_READBACK} }}
grid_voltage = {{ register = {GRID_V}, scale = 0.1 }}
grid_frequency = {{ register = {GRID_F}, scale = 0.01 }}
bus_voltage = {{ register = {BUS_V}, scale = 0.1 }}
bus_frequency = {{ register = {BUS_F}, scale = 0.01 }}
phase_difference = {{ register = {PHASE}, scale = 1, signed = true }}
ac_power = {{ register = {AC_POWER}, scale = 1, signed = true }}
"#
    );
    for (i, (name, prio, w)) in
        [("fridge", 0, 300), ("sockets", 1, 800), ("heat pump", 2, 1500)].iter().enumerate()
    {
        let coil = RELAYS[i];
        let fb = coil + 1;
        s.push_str(&format!(
            "\n[[island.loads]]\nname = \"{name}\"\npriority = {prio}\nnominal_w = {w}\nrelay = {{ coil_register = {coil}, feedback = {{ table = \"holding\", register = {fb}, bit = 0 }} }}\n"
        ));
    }
    s
}

/// The island plant as a register image: connected to a healthy grid, inverter following.
fn plant() -> MemoryRegisters {
    let mut m = MemoryRegisters::default();
    m.put(BREAKER_COMMAND, &[1, 1]);
    m.allow_write(BREAKER_COMMAND, 1);
    m.put(MODE_COMMAND, &[1, 1, 0, 2300, 5000, 2300, 5000, 0, 0]);
    m.allow_write(MODE_COMMAND, 1);
    for c in RELAYS {
        m.put(c, &[1, 1]);
        m.allow_write(c, 1);
    }
    m
}

/// One step of the plant's physics: the breaker's contact follows its command, the inverter's
/// mode read-back its command, each relay's contact its coil; the grid side is `grid`.
fn step_plant(m: &mut MemoryRegisters, grid: bool) {
    let get = |m: &MemoryRegisters, a: u16| m.holding.get(&a).copied().unwrap_or(0);
    let b = get(m, BREAKER_COMMAND);
    m.holding.insert(BREAKER_POSITION, b);
    let mode = get(m, MODE_COMMAND);
    m.holding.insert(MODE_READBACK, mode);
    let mut load = 0;
    for (c, w) in RELAYS.iter().zip(NOMINAL) {
        let v = get(m, *c);
        m.holding.insert(c + 1, v);
        load += v * w;
    }
    // Islanded, the grid-forming inverter carries the circuits that are on.
    m.holding.insert(AC_POWER, if grid { 0 } else { load });
    let (v, f) = if grid { (2300, 5000) } else { (0, 0) };
    m.holding.insert(GRID_V, v);
    m.holding.insert(GRID_F, f);
}

/// `GET /api/v1/island` (`Null` while the API does not answer).
fn island(api: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(api) else { return serde_json::Value::Null };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET /api/v1/island HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
        loopback::TOKEN
    );
    if s.write_all(req.as_bytes()).is_err() {
        return serde_json::Value::Null;
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    // The body is one JSON object (chunk sizes, if any, lie outside its braces).
    match (raw.find("\r\n\r\n").and_then(|h| raw[h..].find('{').map(|b| h + b)), raw.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&raw[a..=b]).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    }
}

#[test]
fn a_real_site_islands_on_its_modbus_breaker_and_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (states, islanded, bat_islanded, reconnected, stdout) = runtime.block_on(async {
        let (site, mut served, server, config_path) =
            loopback::serve_site(dir.path(), loopback::MANUAL_2KW).await;
        let regs = Arc::new(Mutex::new(plant()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let plant_server = tokio::spawn(serve_memory(listener, regs.clone()));
        let mut text = std::fs::read_to_string(&config_path).unwrap();
        text.push_str(&island_section(port));
        std::fs::write(&config_path, &text).unwrap();
        let api = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = \"").and_then(|r| r.strip_suffix('"')))
            .unwrap()
            .to_owned();
        let mut child = loopback::spawn_gateway(&config_path, &["--duration", "45"]);
        let mut states: Vec<String> = Vec::new();
        let mut islanded: Option<serde_json::Value> = None;
        let mut bat_islanded: Vec<f32> = Vec::new();
        let mut reconnected: Option<serde_json::Value> = None;
        let mut lost_at: Option<Duration> = None;
        let mut returned_at: Option<Duration> = None;
        let mut last_poll = Duration::ZERO;
        let status =
            loopback::drive(&site, &mut served, &mut child, Duration::from_secs(90), |elapsed, site, _| {
                let battery = site.with(SimulatedSite::truth).battery_power.get();
                // The grid fails once the battery delivers its set-point, and returns 10 s later.
                if lost_at.is_none() && battery > 1900.0 && elapsed > Duration::from_secs(4) {
                    lost_at = Some(elapsed);
                }
                if let (Some(l), None) = (lost_at, returned_at) {
                    if islanded.is_some() && elapsed > l + Duration::from_secs(10) {
                        returned_at = Some(elapsed);
                    }
                }
                let grid = lost_at.is_none() || returned_at.is_some();
                step_plant(&mut regs.lock().unwrap(), grid);
                if elapsed < last_poll + Duration::from_millis(500) {
                    return;
                }
                last_poll = elapsed;
                let v = island(&api);
                let s = v["grid_state"].as_str().unwrap_or("").to_owned();
                if !s.is_empty() && states.last() != Some(&s) {
                    states.push(s.clone());
                }
                if s == "ISLANDED" {
                    if islanded.is_none() && v["loads"][0]["on"] == true {
                        islanded = Some(v.clone());
                    }
                    if islanded.is_some() {
                        bat_islanded.push(battery);
                    }
                }
                if returned_at.is_some() && s == "CONNECTED" && reconnected.is_none() {
                    reconnected = Some(v);
                }
            })
            .await;
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        assert!(status.success(), "gateway failed: {status}\n{stdout}");
        plant_server.abort();
        drop(server);
        (states, islanded, bat_islanded, reconnected, stdout)
    });
    let v = islanded
        .unwrap_or_else(|| panic!("never ISLANDED with the critical load on; states {states:?}\n{stdout}"));
    assert_eq!(v["breaker"], "open", "{v}");
    assert_eq!(v["inverter_mode"], "grid-forming", "{v}");
    assert_eq!(v["setpoints_allowed"], false, "{v}");
    assert!(v["setpoint_bound"].as_str().unwrap_or("").starts_with("islanded"), "{v}");
    // The set-point bound reaches the battery: no discharge into a grid that is not there
    // (after the ramp down of the first samples).
    let late: Vec<f32> = bat_islanded.iter().skip(2).copied().collect();
    assert!(
        !late.is_empty() && late.iter().all(|p| p.abs() < 100.0),
        "battery while islanded: {bat_islanded:?}"
    );
    let r = reconnected.unwrap_or_else(|| panic!("never CONNECTED again; states {states:?}\n{stdout}"));
    assert_eq!(r["breaker"], "closed", "{r}");
    assert_eq!(r["inverter_mode"], "grid-following", "{r}");
    // The whole sequence, from the audit trail the API keeps (states pass faster than a poll).
    let events: Vec<String> = r["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap_or("").to_owned())
        .collect();
    let at = |t: &str| {
        events.iter().position(|e| e.contains(t)).unwrap_or_else(|| panic!("no '{t}' in {events:?}"))
    };
    assert!(at("grid lost") < at("CONNECTED -> TRANSFERRING"), "{events:?}");
    assert!(at("TRANSFERRING -> ISLANDED") < at("load 0 restored: fridge"), "{events:?}");
    assert!(at("load 0 restored: fridge") < at("ISLANDED -> RESYNCHRONISING"), "{events:?}");
    assert!(at("ISLANDED -> RESYNCHRONISING") < at("RESYNCHRONISING -> RECONNECTING"), "{events:?}");
    assert!(at("RESYNCHRONISING -> RECONNECTING") < at("RECONNECTING -> CONNECTED"), "{events:?}");
}
