//! Simulation speed: a full site (physics + snapshot + Controller::step + invariant checks) at
//! 1 s resolution, in simulated seconds per wall second (design.md §8 target: ≥ 1,000,000).
//! Criterion reports the time per simulated day; the throughput line gives elements (simulated
//! seconds) per second directly. `economics_one_day_at_1s_replanning_15min` adds the planner and
//! the billing of issue #5 (a simulated year is 365 of those, in the two threads it uses).
#![allow(clippy::unwrap_used)] // benchmark set-up: a failure should abort the run loudly
#![allow(missing_docs)] // `criterion_main!` generates an undocumented `pub fn main`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ems_testing::economics::{run_economics, EconomicsOptions};
use ems_testing::{run, RunOptions};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulation");
    g.sample_size(10);
    g.throughput(Throughput::Elements(86_400));
    g.bench_function("one_day_at_1s", |b| {
        b.iter(|| {
            let r = run(&RunOptions::days(1, 1)).unwrap();
            assert_eq!(r.violation_count, 0);
            r
        })
    });
    // The economics run of issue #5: the same site with the day-ahead planner re-planning every
    // 15 minutes (96 plans a day, 24–35 h horizons of real SMARD prices), billed under the
    // dynamic tariff — plus the self-consumption baseline run in a second thread.
    let tariff = ems_strategies::tariff::Tariff::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/tariffs/dynamic.toml"
    ))
    .unwrap();
    let mut opts = EconomicsOptions::reference_home(tariff, 1, 1);
    opts.start_day = 121;
    g.bench_function("economics_one_day_at_1s_replanning_15min", |b| {
        b.iter(|| {
            let r = run_economics(&opts).unwrap();
            assert_eq!((r.violations, r.plans), (0, 96));
            r
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
