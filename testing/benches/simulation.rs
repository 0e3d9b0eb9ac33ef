//! Simulation speed: a full site (physics + snapshot + Controller::step + invariant checks) at
//! 1 s resolution, in simulated seconds per wall second (design.md §8 target: ≥ 1,000,000).
//! Criterion reports the time per simulated day; the throughput line gives elements (simulated
//! seconds) per second directly.
#![allow(clippy::unwrap_used)] // benchmark set-up: a failure should abort the run loudly

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
