//! One full poll cycle over Modbus TCP on loopback: `DeviceSet::read` of the SunSpec inverter
//! (701 + 714 + 704), the SunSpec battery (802, its `CtrlHb` heartbeat write and the vendor
//! cell-temperature model) and the SDM630 meter (one input-register read) against the
//! [`SunSpecSite`] server, with PV, relays and E-stop as direct simulated devices. Prints the
//! Modbus requests per cycle (server counter and per-client stats); criterion reports the time.
//!
//! Client and server share one current-thread tokio runtime, so a round trip is two task
//! switches plus the loopback socket, not a cross-thread wake-up.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark set-up: fail loudly
#![allow(missing_docs)] // `criterion_main!` generates an undocumented `pub fn main`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ems_core::{Millis, Snapshot, Watts};
use ems_devices::modbus::transport::ClientOptions;
use ems_devices::sim::{SharedSite, SimSiteConfig, SimulatedSite};
use ems_devices::wrappers::DeviceEvents;
use ems_testing::sunspec_site::{connect_device_set, SunSpecSite};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let site = SharedSite::new(
        SimulatedSite::new(SimSiteConfig {
            start_day_of_year: 172,
            start_time_of_day: Millis::from_secs(10 * 3600),
            ..SimSiteConfig::default()
        })
        .unwrap(),
    );
    let mut server_site = SunSpecSite::new(site.clone()).unwrap();
    let (_server, mut devices) = rt.block_on(async {
        let server = server_site.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let port = server.local_addr().port();
        let options = ClientOptions { timeout: Duration::from_secs(1), ..ClientOptions::default() };
        let devices = connect_device_set(&site, port, options).await.unwrap();
        (server, devices)
    });
    server_site.sync();
    let mut snapshot = Snapshot::unknown(Watts::ZERO);
    let mut events = DeviceEvents::new();
    let mut now = Millis::ZERO;

    // One cycle on its own, to count the requests (connections are already open from discovery).
    let before = server_site.requests();
    let client_before = (
        devices.inverter().device().client().stats().requests,
        devices.bms().device().client().stats().requests,
        devices.meter().client().stats().requests,
    );
    rt.block_on(devices.read(now, &mut snapshot, &mut events));
    let per_cycle = server_site.requests() - before;
    let inv = devices.inverter().device().client().stats().requests - client_before.0;
    let bms = devices.bms().device().client().stats().requests - client_before.1;
    let meter = devices.meter().client().stats().requests - client_before.2;
    assert!(snapshot.battery.soc.value_at(now).is_some(), "the battery answered");
    assert!(snapshot.grid.active_power.value_at(now).is_some(), "the meter answered");
    assert!(snapshot.inverter.active_power.value_at(now).is_some(), "the inverter answered");
    println!(
        "modbus_poll: {per_cycle} Modbus requests per poll cycle (inverter {inv}, battery {bms}, meter {meter})"
    );

    let mut g = c.benchmark_group("modbus");
    g.bench_function("poll_cycle_inverter_battery_meter", |b| {
        b.iter(|| {
            now = now.plus(Millis::new(1000));
            events.clear();
            rt.block_on(devices.read(now, &mut snapshot, &mut events));
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
