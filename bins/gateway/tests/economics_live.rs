//! Live economics on a real site (issue #12, acceptance): `ems-gateway run --config` on the
//! Modbus-served simulated site with `[economics]` and a local price server in the aWATTar shape.
//! The gateway plans within seconds of the start, shows the plan on `/api/v1/plan`, executes it
//! (the battery, read over Modbus, charges in the cheap slots the plan charges in), survives the
//! price server going away (the last good prices stay in use; the fallback is visible on the API
//! and audited) and goes back to live prices when it comes back.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ems_devices::sim::SimulatedSite;

#[path = "support/loopback.rs"]
mod loopback;

/// A local price server in the aWATTar shape: 15-minute prices from an hour ago for a day,
/// 20 EUR/MWh in the current and the next quarter-hour, 400 EUR/MWh otherwise. `up = false`
/// answers 503.
struct PriceServer {
    port: u16,
    up: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

fn awattar_body() -> String {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let quarter = 15 * 60 * 1000;
    let first = now_ms - now_ms.rem_euclid(quarter) - 4 * quarter;
    let data: Vec<String> = (0..100)
        .map(|i| {
            let start = first + i * quarter;
            // Cheap only in this quarter-hour and the next: too short to fill the battery, so the
            // plan must charge at once.
            let price = if (4..6).contains(&i) { 20.0 } else { 400.0 };
            format!(
                r#"{{"start_timestamp":{start},"end_timestamp":{},"marketprice":{price},"unit":"Eur/MWh"}}"#,
                start + quarter
            )
        })
        .collect();
    format!(r#"{{"object":"list","data":[{}],"url":"/at/v1/marketdata"}}"#, data.join(","))
}

impl PriceServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let requests = Arc::new(AtomicUsize::new(0));
        let (u, r) = (up.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain the header.
                let mut h = String::new();
                while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                r.fetch_add(1, Ordering::SeqCst);
                let (status, body) = if !line.starts_with("GET /v1/marketdata?start=") {
                    ("404 Not Found", "{}".to_owned())
                } else if u.load(Ordering::SeqCst) {
                    ("200 OK", awattar_body())
                } else {
                    ("503 Service Unavailable", r#"{"error":"maintenance"}"#.to_owned())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, up, requests }
    }
}

/// One HTTP/1.1 request to the gateway's API with the site file's token; status and JSON body.
fn api(port: u16, path: &str) -> (u16, serde_json::Value) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return (0, serde_json::Value::Null) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        loopback::TOKEN
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let Some(status) = raw.split(' ').nth(1).and_then(|c| c.parse().ok()) else {
        return (0, serde_json::Value::Null);
    };
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

fn api_port(site_file: &str) -> u16 {
    let line = site_file.lines().find(|l| l.starts_with("listen = ")).unwrap();
    line.trim_end_matches('"').rsplit(':').next().unwrap().parse().unwrap()
}

#[derive(Debug, Default)]
struct Seen {
    planned_at: Option<Duration>,
    planned_charge_w: f32,
    planned_discharge_w: f32,
    charging_w: f32,
    last_good_at: Option<Duration>,
    fallback_text: Option<String>,
    live_again_at: Option<Duration>,
}

/// The pack's capacity and `[economics]` on the live-price tariff, prices from the local server.
fn economics_section(price_port: u16) -> String {
    let tariff = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tariffs/dynamic-live.toml");
    format!(
        r#"
[battery]
chemistry = "lfp"
cells_in_series = 16
capacity_wh = 10240

[economics]
tariff = "{tariff}"
latitude = 52.52
longitude = 13.40
# No PV in the plan's forecast: the cheap hours are worth charging from the grid for.
pv_peak_w = 0
replan_minutes = 15
horizon_hours = 24

[[economics.prices]]
kind = "awattar"
url = "http://127.0.0.1:{price_port}"
refresh_seconds = 2
"#
    )
}

#[test]
fn a_modbus_site_plans_on_live_prices_executes_the_plan_and_survives_the_price_server_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let prices = PriceServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (seen, stdout, status, audit) = runtime.block_on(async {
        let (site, mut served, server, config_path) =
            loopback::serve_site(dir.path(), "kind = \"self-consumption\"").await;
        let mut text = std::fs::read_to_string(&config_path).unwrap();
        text.push_str(&economics_section(prices.port));
        std::fs::write(&config_path, &text).unwrap();
        let port = api_port(&text);
        let mut child = loopback::spawn_gateway(&config_path, &["--duration", "30"]);
        let mut seen = Seen::default();
        let mut next_poll = Duration::ZERO;
        let status =
            loopback::drive(&site, &mut served, &mut child, Duration::from_secs(150), |elapsed, site, _| {
                if elapsed < next_poll {
                    return;
                }
                next_poll = elapsed + Duration::from_millis(500);
                let truth = site.with(SimulatedSite::truth);
                if seen.planned_at.is_none() {
                    let (code, plan) = api(port, "/api/v1/plan");
                    if code == 200 && plan["status"] == "ok" && plan["price_basis"] == "spot" {
                        // Cheap hours against dear ones beat self-consumption: the plan is acted on.
                        assert_eq!(plan["acted_on"], true, "{plan}");
                        seen.planned_at = Some(elapsed);
                        let slots = plan["slots"].as_array().unwrap();
                        let watts = |cheap: bool| {
                            slots
                                .iter()
                                .filter(|s| {
                                    (s["spot_price"].as_f64() == Some(0.02)) == cheap
                                        && !s["spot_price"].is_null()
                                })
                                .map(|s| s["battery_w"].as_f64().unwrap())
                                .collect::<Vec<_>>()
                        };
                        #[allow(clippy::cast_possible_truncation)] // test: powers in W
                        {
                            seen.planned_charge_w = watts(true).into_iter().fold(0.0, f64::min) as f32;
                            seen.planned_discharge_w = watts(false).into_iter().fold(0.0, f64::max) as f32;
                        }
                    }
                    return;
                }
                // The battery follows the plan: a charging slot now, and the inverter charging.
                let (_, plan) = api(port, "/api/v1/plan");
                let now = jiff::Timestamp::now();
                let current = plan["slots"].as_array().and_then(|slots| {
                    slots.iter().find(|s| {
                        let start: jiff::Timestamp = s["start"].as_str().unwrap().parse().unwrap();
                        let end: jiff::Timestamp = s["end"].as_str().unwrap().parse().unwrap();
                        start <= now && now < end
                    })
                });
                let planned = current.and_then(|s| s["battery_w"].as_f64()).unwrap_or(0.0);
                if planned < -1000.0 {
                    seen.charging_w = seen.charging_w.min(truth.battery_power.get());
                }
                // Once the battery follows the plan, take the price server away; when the gateway
                // shows the fallback, bring it back.
                if seen.charging_w < -1000.0 && seen.last_good_at.is_none() {
                    prices.up.store(false, Ordering::SeqCst);
                    let (_, p) = api(port, "/api/v1/prices");
                    if p["status"] == "last_good" {
                        seen.last_good_at = Some(elapsed);
                        let (_, e) = api(port, "/api/v1/economics");
                        seen.fallback_text = e["fallback"].as_str().map(str::to_owned);
                        prices.up.store(true, Ordering::SeqCst);
                    }
                } else if seen.last_good_at.is_some() && seen.live_again_at.is_none() {
                    let (_, p) = api(port, "/api/v1/prices");
                    if p["status"] == "live" {
                        seen.live_again_at = Some(elapsed);
                    }
                }
            })
            .await;
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        drop(server);
        let db = ems_api::db::Db::open(dir.path().join("ems.db")).unwrap();
        let page = ems_api::ports::AuditSink::query_audit(
            &db,
            &ems_api::ports::AuditQuery {
                kind: Some("economics.prices".to_owned()),
                limit: 1000,
                ..Default::default()
            },
        )
        .unwrap();
        (seen, stdout, status, page.entries)
    });

    assert!(status.success(), "gateway failed: {status}\n{stdout}");
    let planned = seen.planned_at.unwrap_or_else(|| panic!("no plan on live prices: {seen:?}\n{stdout}"));
    assert!(planned < Duration::from_secs(60), "planned only after {planned:?}");
    assert!(prices.requests.load(Ordering::SeqCst) > 0);
    // Half an hour is cheap and the rest of the day dear: the plan charges while cheap
    // and discharges when dear, and the battery charges while the plan's slot says so.
    assert!(seen.planned_charge_w < -1000.0, "the plan does not charge in the cheap slots: {seen:?}");
    assert!(seen.planned_discharge_w > 100.0, "the plan does not discharge in the dear slots: {seen:?}");
    assert!(seen.charging_w < -1000.0, "the battery did not follow the plan's charge: {seen:?}\n{stdout}");
    assert!(seen.last_good_at.is_some(), "the price outage never showed as last_good: {seen:?}");
    let fallback = seen.fallback_text.clone().unwrap_or_default();
    assert!(fallback.contains("last good"), "fallback not explained on the API: {seen:?}");
    assert!(seen.live_again_at.is_some(), "live prices did not come back: {seen:?}");
    let failed =
        audit.iter().any(|e| e.outcome == ems_api::ports::Outcome::Failed && e.detail.contains("503"));
    assert!(failed, "the failing price source is not in the audit log: {audit:?}");
}
