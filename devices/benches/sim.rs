//! Cost of one simulated second: `advance(1 s)` + `fill_snapshot`; and of one cycle through
//! the device handles of a `SharedSite`.
#![allow(missing_docs)]
// `criterion_main!` generates an undocumented `pub fn main`
// A benchmark has nobody to report an error to: failing setup aborts the run.
#![allow(clippy::expect_used)]
use criterion::{criterion_group, criterion_main, Criterion};
use ems_core::{ContactorCommand, Millis, Snapshot, Watts};
use ems_devices::sim::{SharedSite, SimSiteConfig, SimulatedSite};
use ems_devices::traits::{
    Bms, ControlSource, EStopInput, Inverter, InverterSettings, Meter, PvInverter, Relay,
};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut site = SimulatedSite::new(SimSiteConfig::default()).expect("default config is valid");
    site.apply(ems_core::watts!(-2000.0), ContactorCommand::Close);
    let mut snap = Snapshot::unknown(ems_core::watts!(5000.0));
    let mut now = 0_u64;
    let mut sign = 1.0_f32;
    c.bench_function("advance_1s_plus_fill_snapshot", |b| {
        b.iter(|| {
            now += 1000;
            // Alternate charge and discharge every simulated hour so the SOC stays inside.
            if now % 3_600_000 == 0 {
                sign = -sign;
                site.apply(Watts::saturating(2000.0 * sign), ContactorCommand::Close);
            }
            site.advance(black_box(Millis::new(1000)));
            site.fill_snapshot(&mut snap, Millis::new(now));
            black_box(&snap);
        });
    });
    c.bench_function("advance_100ms", |b| {
        b.iter(|| site.advance(black_box(Millis::new(100))));
    });

    let shared =
        SharedSite::new(SimulatedSite::new(SimSiteConfig::default()).expect("default config is valid"));
    let mut d = shared.devices();
    pollster::block_on(async {
        let remote = InverterSettings {
            control: ControlSource::Remote,
            setpoint: Watts::ZERO,
            revert_timeout: Some(Millis::new(10_000)),
        };
        d.inverter.write_settings(&remote).await.expect("take control");
        d.precharge_relay.set(true).await.expect("relay");
        shared.with_mut(|s| s.advance(Millis::new(1000)));
        d.main_relay.set(true).await.expect("relay");
        d.precharge_relay.set(false).await.expect("relay");
    });
    let mut sign = 1.0_f32;
    c.bench_function("handles_cycle_read_all_write_setpoint_advance_1s", |b| {
        b.iter(|| {
            pollster::block_on(async {
                sign = -sign;
                black_box(d.bms.read().await.expect("bms"));
                black_box(d.inverter.read().await.expect("inverter"));
                black_box(d.meter.read().await.expect("meter"));
                black_box(d.pv.read().await.expect("pv"));
                black_box(d.estop.read().await.expect("estop"));
                black_box(d.main_relay.feedback().await.expect("relay"));
                d.inverter.write_setpoint(Watts::saturating(1000.0 * sign)).await.expect("setpoint");
            });
            shared.with_mut(|s| s.advance(black_box(Millis::new(1000))));
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
