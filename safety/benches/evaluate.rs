//! `SafetyMonitor::evaluate` on a healthy snapshot (the simulator's hot path: one call per
//! simulated second, budget well under 300 ns).
#![allow(missing_docs)] // `criterion_main!` generates an undocumented `pub fn main`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ems_core::{Events, Millis};
use ems_safety::testkit::healthy_snapshot;
use ems_safety::{SafetyConfig, SafetyMonitor};

fn bench_evaluate(c: &mut Criterion) {
    let mut monitor = SafetyMonitor::new(SafetyConfig::default());
    let mut events = Events::new();
    let mut t = 0u64;
    c.bench_function("safety_evaluate_healthy", |b| {
        b.iter(|| {
            // One simulated second per call, so trend windows take samples as in the simulator.
            t += 1_000;
            let now = Millis::new(t);
            let snapshot = healthy_snapshot(now);
            events.clear();
            black_box(monitor.evaluate(black_box(&snapshot), now, &mut events))
        });
    });
    let snapshot = healthy_snapshot(Millis::ZERO);
    let mut monitor = SafetyMonitor::new(SafetyConfig::default());
    c.bench_function("safety_evaluate_same_snapshot", |b| {
        b.iter(|| {
            events.clear();
            black_box(monitor.evaluate(black_box(&snapshot), Millis::ZERO, &mut events))
        });
    });
}

criterion_group!(benches, bench_evaluate);
criterion_main!(benches);
