//! The demand charge in the planner's objective: a plan that would raise the billing period's
//! peak pays for it, so with a demand charge the plan shaves a peak that the same plan without
//! one leaves alone.

// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_core::Watts;
use ems_strategies::optimizer::{
    plan, plan_with_demand_steps, DemandObjective, DemandPrice, PlanStatus, Problem, Step,
};
use ems_strategies::{ratio, Price};
use jiff::{SignedDuration, Timestamp};

fn t0() -> Timestamp {
    "2024-06-01T00:00:00Z".parse().unwrap()
}

/// Eight hours: a 6 kW load spike in a cheap hour (1), then dear hours with 500 W of load.
fn spike_day() -> Vec<Step> {
    (0..8)
        .map(|i| Step {
            start: t0() + SignedDuration::from_hours(i),
            duration: SignedDuration::from_hours(1),
            pv: Watts::ZERO,
            load: Watts::saturating(if i == 1 { 6000.0 } else { 500.0 }),
            import_price: Price::new(if i < 4 { 0.20 } else { 0.40 }),
            export_price: Price::new(0.05),
        })
        .collect()
}

/// 3 kWh stored, 1 kWh of it below the window: 2 kWh to spend.
fn battery() -> Problem {
    Problem { soc_init: ratio!(0.3), soc_final: ratio!(0.1), ..Problem::default() }
}

fn peak(grid: &[f64]) -> f64 {
    grid.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn demand(per_kw: f64, peak_so_far: f32) -> Option<DemandObjective> {
    Some(DemandObjective {
        per_kw: DemandPrice::try_new(per_kw).unwrap(),
        peak_so_far: Watts::saturating(peak_so_far),
        until: None,
    })
}

#[test]
fn a_demand_charge_shaves_the_peak_the_plan_without_it_leaves() {
    let steps = spike_day();
    let without = plan(&battery(), &steps).unwrap();
    // Energy alone: the battery serves the dear hours, the spike is imported in full.
    assert!((peak(&without.grid_w) - 6000.0).abs() < 1e-6, "{:?}", without.grid_w);

    let with = plan(&Problem { demand_charge: demand(10.0, 0.0), ..battery() }, &steps).unwrap();
    assert_eq!(with.status, PlanStatus::Optimal);
    // 10 per kW beats any energy-price difference: the battery covers most of the spike,
    // refilling from the grid in the cheap hours around it, which flattens the import there
    // (6 kW spike + 1.5 kWh around it over 4 h, less the 2 kWh spare, about 2.4 kW).
    let shaved = peak(&with.grid_w);
    assert!(shaved < 2500.0, "peak {shaved}: {:?}", with.grid_w);
    assert!(with.battery_w[1] > 3500.0, "{:?}", with.battery_w);
    // The objective includes the charge on the rise of the peak, and the shaved plan is the
    // cheaper one under it.
    let energy_without = without.total_cost.get();
    assert!(with.total_cost.get() < energy_without + 10.0 * 6.0, "{} vs {}", with.total_cost, energy_without);
}

#[test]
fn a_peak_already_reached_this_month_is_not_paid_twice() {
    let steps = spike_day();
    let without = plan(&battery(), &steps).unwrap();
    // The month already saw 7 kW: the spike raises nothing, so the energy plan stands.
    let with = plan(&Problem { demand_charge: demand(10.0, 7000.0), ..battery() }, &steps).unwrap();
    assert_eq!(with.battery_w, without.battery_w);
    assert!((with.total_cost.get() - without.total_cost.get()).abs() < 1e-9);
}

#[test]
fn only_counting_steps_are_shaved() {
    let steps = spike_day();
    let problem = Problem { demand_charge: demand(10.0, 0.0), ..battery() };
    // The spike falls outside the peak windows (hours 4..8 count): nothing to shave there.
    let counts: Vec<bool> = (0..8).map(|i| i >= 4).collect();
    let p = plan_with_demand_steps(&problem, &steps, &counts).unwrap();
    assert!((p.grid_w[1] - 6000.0).abs() < 1e-6, "{:?}", p.grid_w);
    // The billing period ends before the spike: the same.
    let until = Some(DemandObjective {
        until: Some(t0() + SignedDuration::from_hours(1)),
        ..demand(10.0, 0.0).unwrap()
    });
    let p = plan(&Problem { demand_charge: until, ..battery() }, &steps).unwrap();
    assert!((p.grid_w[1] - 6000.0).abs() < 1e-6, "{:?}", p.grid_w);
}

#[test]
fn a_bad_rate_is_refused_by_name() {
    let e = DemandPrice::try_new(-1.0).unwrap_err();
    assert_eq!(e.field, "demand-charge-per-kw");
    assert!(DemandPrice::try_new(f64::NAN).is_err());
}
