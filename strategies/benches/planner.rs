//! Planner speed on real data (design.md §8: 96 × 15 min ≤ 5 ms, 672 × 15 min ≤ 50 ms).
//!
//! The week Mon 2018-04-30 .. Sun 2018-05-06 in 15-minute steps, built from files in the
//! repository (SMARD prices, TMY3 irradiance, BDEW H25 load; see `tests/planner_real_data.rs`
//! for the derivation and sources). The inputs go through `parse_csv` once, outside the timing;
//! the default battery (`Problem::default()`: 10 kWh, 5 kW, η 0.95/0.95, SOC 10–90 %, start and
//! end 50 %) is planned. The 96-step day is 1 May (negative spot prices, a holiday).
#![allow(missing_docs)] // `criterion_main!` generates an undocumented `pub fn main`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ems_strategies::optimizer::{plan, DemandObjective, DemandPrice, Problem, Scenarios, Step};
use ems_strategies::{Factor, Price, Ratio};

// The file's own LP check is a `#[test]`, which is not built into the bench; its helpers are
// then unused here.
#[allow(dead_code, unused_imports)]
#[path = "../tests/planner_real_data.rs"]
mod real_data;

fn bench(c: &mut Criterion) {
    let steps = match real_data::week() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot build the benchmark data: {e}");
            std::process::exit(1);
        }
    };
    let problem = Problem::default();
    let day = &steps[96..192];
    for (name, s) in [("day", day), ("week", &steps[..])] {
        match plan(&problem, s) {
            Ok(p) => eprintln!(
                "{name}: {} steps, cost {:.4}, status {:?}, solve {:.3} ms",
                s.len(),
                p.total_cost.get(),
                p.status,
                p.solve_time.as_secs_f64() * 1e3
            ),
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
    c.bench_function("plan 96 x 15 min (1 May 2018)", |b| {
        b.iter(|| plan(black_box(&problem), black_box(day)))
    });
    c.bench_function("plan 672 x 15 min (week from 30 Apr 2018)", |b| {
        b.iter(|| plan(black_box(&problem), black_box(&steps)))
    });
    // With a demand charge of 10 per kW on the month's peak (none reached yet): the outer
    // search over the import cap, about 27 exact solves.
    let per_kw = DemandPrice::try_new(10.0).unwrap_or(DemandPrice::ZERO);
    let demand = Problem {
        demand_charge: Some(DemandObjective { per_kw, peak_so_far: ems_core::Watts::ZERO, until: None }),
        ..problem
    };
    // Without PV (a dark week), so the site imports and the cap search runs.
    let dark: Vec<Step> = steps.iter().map(|s| Step { pv: ems_core::Watts::ZERO, ..*s }).collect();
    let dark_day = &dark[96..192];
    for (name, s) in [("dark day, demand charge", dark_day), ("dark week, demand charge", &dark[..])] {
        if let Ok(p) = plan(&demand, s) {
            let peak = p.grid_w.iter().copied().fold(0.0_f64, f64::max);
            eprintln!(
                "{name}: cost {:.4} incl. demand charge, peak {peak:.0} W, solve {:.3} ms",
                p.total_cost.get(),
                p.solve_time.as_secs_f64() * 1e3
            );
        }
    }
    c.bench_function("plan 96 x 15 min with a demand charge (no PV)", |b| {
        b.iter(|| plan(black_box(&demand), black_box(dark_day)))
    });
    c.bench_function("plan 672 x 15 min with a demand charge (no PV)", |b| {
        b.iter(|| plan(black_box(&demand), black_box(&dark)))
    });
    // Against 15 forecast scenarios (5 PV × 3 load factors, as the simulator's EMS learns
    // them from its errors): every step's cost averages over 15 grid powers.
    let pv = [0.2, 0.6, 0.9, 1.1, 1.3].map(|f| (Factor::saturating(f), Ratio::saturating(0.2)));
    let load = [0.8, 1.0, 1.3].map(|f| (Factor::saturating(f), Ratio::saturating(1.0 / 3.0)));
    let scenarios = Scenarios::product(&pv, &load, jiff::SignedDuration::from_hours(3)).ok();
    let uncertain = Problem { scenarios, ..problem };
    for (name, s) in [("day, 15 scenarios", day), ("week, 15 scenarios", &steps[..])] {
        if let Ok(p) = plan(&uncertain, s) {
            eprintln!(
                "{name}: expected cost {:.4}, solve {:.3} ms",
                p.total_cost.get(),
                p.solve_time.as_secs_f64() * 1e3
            );
        }
    }
    c.bench_function("plan 96 x 15 min, 15 forecast scenarios", |b| {
        b.iter(|| plan(black_box(&uncertain), black_box(day)))
    });
    c.bench_function("plan 672 x 15 min, 15 forecast scenarios", |b| {
        b.iter(|| plan(black_box(&uncertain), black_box(&steps)))
    });
    // Stress, not a target: the same week with prices that make the problem non-convex (import
    // lowered by 0.25 so that 1 May goes negative; export alternating 20 % above and below
    // import), so the general envelope path runs instead of the convex merge.
    let stress: Vec<Step> = steps
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let imp = s.import_price.per_kwh() - 0.25;
            let exp = imp * if (k / 8) % 2 == 0 { 1.2 } else { 0.8 };
            Step { import_price: Price::new(imp), export_price: Price::new(exp), ..*s }
        })
        .collect();
    if let Ok(p) = plan(&problem, &stress) {
        eprintln!(
            "stress: cost {:.4}, status {:?}, solve {:.3} ms",
            p.total_cost.get(),
            p.status,
            p.solve_time.as_secs_f64() * 1e3
        );
    }
    c.bench_function("plan 672 x 15 min, non-convex prices (stress)", |b| {
        b.iter(|| plan(black_box(&problem), black_box(&stress)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
