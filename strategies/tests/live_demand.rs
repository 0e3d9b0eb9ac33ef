//! A demand charge in the tariff is part of the live plan's objective, not only of the bill: the
//! plan spreads its night charge instead of drawing the month's peak at full power, and a peak
//! already reached this month is a free allowance.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod live_support;

use ems_strategies::live::Measured;
use ems_strategies::tariff::{DemandBasis, DemandCharge};
use live_support::{engine, local, minutes, ratio, tou, w};

fn highest_planned_import(live: &mut ems_strategies::live::LiveEconomics) -> f32 {
    let now = local("2026-06-03T00:00");
    let plan = live.replan(now, ratio(0.1)).unwrap();
    plan.slots.iter().map(|s| s.grid.get()).fold(0.0, f32::max)
}

#[test]
fn a_demand_charge_shaves_the_planned_peak_import() {
    let plain = highest_planned_import(&mut engine(tou()));
    let charge = DemandCharge::new(20.0, DemandBasis::MonthlyPeak).unwrap();
    let mut live = engine(tou().with_demand_charge(charge).unwrap());
    let shaved = highest_planned_import(&mut live);
    // Without it the night charge runs at the inverter's 5 kW on top of the 500 W load.
    assert!(plain > 5000.0, "plain plan's peak {plain} W");
    assert!(shaved < plain - 1000.0, "demand charge did not shave: {shaved} W vs {plain} W");
}

#[test]
fn the_months_peak_so_far_is_an_allowance() {
    let charge = DemandCharge::new(20.0, DemandBasis::MonthlyPeak).unwrap();
    let mut live = engine(tou().with_demand_charge(charge).unwrap());
    let fresh = highest_planned_import(&mut live);
    // Earlier this month the site already imported 5.5 kW for a quarter-hour.
    let mut live = engine(tou().with_demand_charge(charge).unwrap());
    let start = local("2026-06-01T12:00");
    let m = Measured { grid: w(5500.0), pv: w(0.0), battery: w(-5000.0), soc: Some(ratio(0.5)) };
    live.observe(start, minutes(15), &m).unwrap();
    let m = Measured { grid: w(500.0), pv: w(0.0), battery: w(0.0), soc: Some(ratio(0.1)) };
    live.observe(start + minutes(15), minutes(15), &m).unwrap();
    let allowed = highest_planned_import(&mut live);
    assert!(allowed > fresh + 1000.0, "the month's peak is not used: {allowed} W vs {fresh} W");
}
