//! The value of stored energy at the end of the horizon (`Problem::end_value`): with it the
//! plan keeps energy that a horizon ending in zero value would sell, up to the amount the value
//! holds for, and charges from the grid for it only when the value beats the charging cost.

// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_core::{WattHours, Watts};
use ems_strategies::optimizer::{plan, EndValue, PlanError, Problem, Step};
use ems_strategies::{ratio, Price};
use jiff::{SignedDuration, Timestamp};

/// `n` hours without PV or load: import at `import`, export at 0.08.
fn idle_hours(n: i64, import: f64) -> Vec<Step> {
    let t0: Timestamp = "2024-12-01T00:00:00Z".parse().unwrap();
    (0..n)
        .map(|i| Step {
            start: t0 + SignedDuration::from_hours(i),
            duration: SignedDuration::from_hours(1),
            pv: Watts::ZERO,
            load: Watts::ZERO,
            import_price: Price::new(import),
            export_price: Price::new(0.08),
        })
        .collect()
}

/// 10 kWh, window 10–90 %, 90 % full, no final SOC above the window's floor.
fn full_battery() -> Problem {
    Problem { soc_init: ratio!(0.9), soc_final: ratio!(0.1), ..Problem::default() }
}

fn valued(price: f64, up_to_wh: f32) -> Option<EndValue> {
    Some(EndValue { price: Price::new(price), up_to: WattHours::saturating(up_to_wh) })
}

fn final_soc(p: &ems_strategies::optimizer::Plan) -> f64 {
    *p.soc.last().unwrap()
}

#[test]
fn without_an_end_value_the_battery_is_sold_at_the_export_price() {
    let p = plan(&full_battery(), &idle_hours(4, 0.30)).unwrap();
    assert!((final_soc(&p) - 0.1).abs() < 1e-9, "{:?}", p.soc);
    // 8 kWh stored, 7.6 kWh delivered, exported at 0.08.
    assert!((p.total_cost.get() + 7.6 * 0.08).abs() < 1e-9, "{}", p.total_cost);
}

#[test]
fn energy_worth_more_than_its_export_is_kept() {
    // A stored kWh exported earns 0.95 × 0.08 = 0.076; kept it is worth 0.25.
    let problem = Problem { end_value: valued(0.25, 10_000.0), ..full_battery() };
    let p = plan(&problem, &idle_hours(4, 0.30)).unwrap();
    assert!((final_soc(&p) - 0.9).abs() < 1e-9, "{:?}", p.soc);
    assert!(p.battery_w.iter().all(|b| b.abs() < 1e-6), "{:?}", p.battery_w);
    // The end value is part of the objective, not of the reported cost.
    assert!(p.total_cost.get().abs() < 1e-12, "{}", p.total_cost);
}

#[test]
fn the_value_holds_only_up_to_its_amount() {
    // 3 kWh above the floor are worth 0.25 a kWh, the rest nothing: 5 kWh are sold.
    let problem = Problem { end_value: valued(0.25, 3000.0), ..full_battery() };
    let p = plan(&problem, &idle_hours(4, 0.30)).unwrap();
    assert!((final_soc(&p) - 0.4).abs() < 1e-9, "{:?}", p.soc);
    assert!((p.total_cost.get() + 5.0 * 0.95 * 0.08).abs() < 1e-9, "{}", p.total_cost);
}

#[test]
fn the_grid_charges_for_the_end_value_only_when_it_pays() {
    let empty = Problem { soc_init: ratio!(0.1), ..full_battery() };
    // Charging costs 0.20 / 0.95 ≈ 0.211 per stored kWh: worth it for 0.25, not for 0.20.
    let dear = plan(&Problem { end_value: valued(0.20, 2000.0), ..empty }, &idle_hours(2, 0.20)).unwrap();
    assert!((final_soc(&dear) - 0.1).abs() < 1e-9, "{:?}", dear.soc);
    let cheap = plan(&Problem { end_value: valued(0.25, 2000.0), ..empty }, &idle_hours(2, 0.20)).unwrap();
    assert!((final_soc(&cheap) - 0.3).abs() < 1e-9, "{:?}", cheap.soc);
    assert!((cheap.total_cost.get() - 2.0 / 0.95 * 0.20).abs() < 1e-9, "{}", cheap.total_cost);
}

#[test]
fn a_negative_end_value_is_refused_by_name() {
    let problem = Problem { end_value: valued(-0.1, 1000.0), ..full_battery() };
    match plan(&problem, &idle_hours(1, 0.30)) {
        Err(PlanError::Param(e)) => assert_eq!(e.field, "end-value-price"),
        other => panic!("{other:?}"),
    }
}
