//! Cost of one simulated second: `advance(1 s)` + `fill_snapshot`.
// A benchmark has nobody to report an error to: failing setup aborts the run.
#![allow(clippy::expect_used)]
use criterion::{criterion_group, criterion_main, Criterion};
use ems_core::{Command, ContactorCommand, Millis, Snapshot, Watts};
use ems_devices::sim::{SimSiteConfig, SimulatedSite};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut site = SimulatedSite::new(SimSiteConfig::default()).expect("default config is valid");
    site.apply(&Command { battery_setpoint: Watts::new(-2000.0), contactor: ContactorCommand::Close });
    let mut snap = Snapshot::unknown(Watts::new(5000.0));
    let mut now = 0_u64;
    let mut sign = 1.0_f32;
    c.bench_function("advance_1s_plus_fill_snapshot", |b| {
        b.iter(|| {
            now += 1000;
            // Alternate charge and discharge every simulated hour so the SOC stays inside.
            if now % 3_600_000 == 0 {
                sign = -sign;
                site.apply(&Command {
                    battery_setpoint: Watts::new(2000.0 * sign),
                    contactor: ContactorCommand::Close,
                });
            }
            site.advance(black_box(Millis::new(1000)));
            site.fill_snapshot(&mut snap, Millis::new(now));
            black_box(&snap);
        });
    });
    c.bench_function("advance_100ms", |b| {
        b.iter(|| site.advance(black_box(Millis::new(100))));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
