//! E-stop edge → zero set-point written and both relays commanded open, through
//! `DeviceSet::check_estop` with mock devices that complete immediately (design.md §8: ≤ 1 ms).
#![allow(missing_docs)]
// `criterion_main!` generates an undocumented `pub fn main`
// A benchmark has nobody to report an error to: failing setup aborts the run.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/wrappers_mocks/mod.rs"]
mod wrappers_mocks;

use criterion::{criterion_group, criterion_main, Criterion};
use ems_core::snapshot::EStopInput as EStopState;
use ems_core::Millis;
use ems_devices::io::{DeviceSet, DeviceSetConfig};
use ems_devices::wrappers::DeviceEvents;
use std::hint::black_box;
use wrappers_mocks::{Clock, MockBms, MockEStop, MockInverter, MockMeter, MockPv, MockRelay};

fn bench(c: &mut Criterion) {
    let clock = Clock::default();
    let inv = MockInverter::with_timer(&clock);
    let estop = MockEStop::default();
    let mut set = DeviceSet::new(
        MockBms::healthy(),
        inv.clone(),
        MockMeter::default(),
        MockPv::default(),
        MockRelay::default(),
        MockRelay::default(),
        estop.clone(),
        DeviceSetConfig::default(),
    )
    .expect("default config is valid");
    let mut now = 0_u64;
    let mut events = DeviceEvents::new();
    c.bench_function("estop_edge_to_zero_and_open", |b| {
        b.iter(|| {
            // Release (not timed separately: one read), then the press edge.
            *estop.0.borrow_mut() = Ok(EStopState::Released);
            now += 1;
            events.clear();
            let _ = pollster::block_on(set.check_estop(Millis::new(now), &mut events));
            *estop.0.borrow_mut() = Ok(EStopState::Pressed);
            let pressed = pollster::block_on(set.check_estop(Millis::new(now), &mut events));
            black_box(pressed);
            // Keep the mock's write log from growing without bound.
            inv.with(|s| s.writes.clear());
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
