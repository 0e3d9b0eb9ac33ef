//! Small hand-made cases whose optimal plan is obvious, the relaxations, the JSON shape and the
//! rolling-horizon helpers.

// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_core::Watts;
use ems_strategies::optimizer::{parse_csv, plan, remaining_steps, replan, PlanStatus, Problem, Step};
use ems_strategies::{ratio, Price, Ratio};
use jiff::{SignedDuration, Timestamp};

/// Hourly steps with the given (import, export) prices and constant PV and load.
fn hourly(prices: &[(f64, f64)], pv: f32, load: f32) -> Vec<Step> {
    let t0: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
    prices
        .iter()
        .enumerate()
        .map(|(i, &(imp, exp))| Step {
            start: t0 + SignedDuration::from_hours(i64::try_from(i).unwrap()),
            duration: SignedDuration::from_hours(1),
            pv: Watts::saturating(pv),
            load: Watts::saturating(load),
            import_price: Price::new(imp),
            export_price: Price::new(exp),
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * (1.0 + b.abs())
}

#[test]
fn flat_price_with_losses_does_not_cycle() {
    let steps = hourly(&[(0.30, 0.08); 24], 0.0, 500.0);
    let p = plan(&Problem::default(), &steps).unwrap();
    assert_eq!(p.status, PlanStatus::Optimal);
    assert!(p.battery_w.iter().all(|&b| b.abs() < 1e-6), "{:?}", p.battery_w);
    assert!(close(p.total_cost.get(), 24.0 * 0.5 * 0.30));
}

#[test]
fn cheap_then_expensive_charges_then_discharges() {
    let mut prices = vec![(0.10, 0.05); 6];
    prices.extend(vec![(0.50, 0.05); 6]);
    let steps = hourly(&prices, 0.0, 1000.0);
    let p = plan(&Problem::default(), &steps).unwrap();
    assert_eq!(p.status, PlanStatus::Optimal);
    assert!(p.battery_w[..6].iter().all(|&b| b <= 1e-6), "charges while cheap: {:?}", p.battery_w);
    assert!(p.battery_w[6..].iter().all(|&b| b >= -1e-6), "discharges while expensive: {:?}", p.battery_w);
    // It can fill up to 90 % and must end at 50 %: 4000 Wh stored, 3800 Wh delivered (η = 0.95).
    let charged: f64 = p.battery_w[..6].iter().map(|b| -b).sum();
    let delivered: f64 = p.battery_w[6..].iter().sum();
    assert!(close(charged, 4000.0 / 0.95), "{:?}", p.battery_w);
    assert!(close(delivered, 3800.0), "{:?}", p.battery_w);
    assert!(*p.soc.last().unwrap() >= 0.5 - 1e-9);
}

#[test]
fn negative_import_price_charges() {
    let mut prices = vec![(0.30, 0.08); 3];
    prices.push((-0.20, 0.0));
    prices.extend(vec![(0.30, 0.08); 3]);
    let steps = hourly(&prices, 0.0, 300.0);
    let p = plan(&Problem::default(), &steps).unwrap();
    assert!(close(p.battery_w[3], -5000.0), "charges at full power when paid to import: {:?}", p.battery_w);
    assert!(p.grid_w[3] > 5000.0);
}

#[test]
fn export_above_import_discharges_to_export() {
    let mut prices = vec![(0.30, 0.08); 3];
    prices.push((0.30, 0.60));
    let steps = hourly(&prices, 0.0, 200.0);
    let problem = Problem { soc_final: ratio!(0.1), ..Problem::default() };
    let p = plan(&problem, &steps).unwrap();
    assert!(close(p.battery_w[3], 5000.0), "{:?}", p.battery_w);
    assert!(close(p.grid_w[3], -4800.0), "{:?}", p.grid_w);
}

#[test]
fn no_battery_export_caps_discharge_at_the_deficit() {
    let mut prices = vec![(0.30, 0.08); 3];
    prices.push((0.30, 0.60));
    let steps = hourly(&prices, 0.0, 200.0);
    let problem = Problem { soc_final: ratio!(0.1), no_battery_export: true, ..Problem::default() };
    let p = plan(&problem, &steps).unwrap();
    assert!(p.grid_w.iter().all(|&g| g >= -1e-6), "{:?}", p.grid_w);
    assert!(close(p.battery_w[3], 200.0), "{:?}", p.battery_w);
}

#[test]
fn degradation_cost_stops_marginal_arbitrage() {
    let mut prices = vec![(0.20, 0.0); 4];
    prices.extend(vec![(0.25, 0.0); 4]);
    let steps = hourly(&prices, 0.0, 2000.0);
    // Spread 0.05 < round-trip loss and wear: no cycling.
    let problem = Problem { degradation_cost: Price::new(0.05), ..Problem::default() };
    let p = plan(&problem, &steps).unwrap();
    assert!(p.battery_w.iter().all(|&b| b.abs() < 1e-6), "{:?}", p.battery_w);
}

#[test]
fn initial_soc_below_window_returns_at_full_power() {
    let steps = hourly(&[(0.30, 0.08); 6], 0.0, 300.0);
    let problem = Problem { soc_init: ratio!(0.0), ..Problem::default() };
    let p = plan(&problem, &steps).unwrap();
    // 10 % of 10 kWh = 1000 Wh; a full hour at 5 kW stores 4750 Wh: back inside after the first
    // step, which is a hard constraint, not a relaxation.
    assert_eq!(p.status, PlanStatus::Optimal);
    assert!(p.soc[0] >= 0.1 - 1e-9, "{:?}", p.soc);

    let problem =
        Problem { soc_init: ratio!(0.0), charge_max_w: ems_core::watts!(400.0), ..Problem::default() };
    let p = plan(&problem, &steps).unwrap();
    assert_eq!(p.status, PlanStatus::FeasibleRelaxed);
    assert_eq!(p.relaxations.soc_window_steps, vec![0, 1]);
    assert!(close(p.battery_w[0], -400.0) && close(p.battery_w[1], -400.0), "{:?}", p.battery_w);
    assert!(p.soc[2] >= 0.1 - 1e-9);
}

#[test]
fn initial_soc_above_window_returns() {
    let steps = hourly(&[(0.30, 0.08); 4], 0.0, 300.0);
    let problem =
        Problem { soc_init: ratio!(1.0), discharge_max_w: ems_core::watts!(300.0), ..Problem::default() };
    let p = plan(&problem, &steps).unwrap();
    // 1000 Wh above 90 % at 300 W / 0.95 = 315.8 Wh per hour: outside for three steps.
    assert_eq!(p.relaxations.soc_window_steps, vec![0, 1, 2]);
    assert!(p.battery_w[..3].iter().all(|&b| close(b, 300.0)), "{:?}", p.battery_w);
}

#[test]
fn pv_surplus_beyond_limits_relaxes_the_grid_limit_minimally() {
    let steps = hourly(&[(0.30, 0.08); 4], 12_000.0, 0.0);
    let problem = Problem {
        grid_export_max_w: ems_core::watts!(5000.0),
        soc_init: ratio!(0.1),
        soc_final: ratio!(0.1),
        ..Problem::default()
    };
    let p = plan(&problem, &steps).unwrap();
    assert_eq!(p.status, PlanStatus::FeasibleRelaxed);
    // 7 kW beyond what the grid takes; the battery absorbs all it can (8000 Wh of room), and the
    // rest must exceed the export limit in every hour.
    let stored: f64 = p.battery_w.iter().map(|b| -b * 0.95).sum();
    assert!(close(stored, 8000.0), "{:?}", p.battery_w);
    assert_eq!(p.relaxations.grid_limit_steps, vec![0, 1, 2, 3]);
    assert!(p.soc.iter().all(|&s| s <= 0.9 + 1e-9));
}

#[test]
fn unreachable_final_soc_ends_as_full_as_possible() {
    let steps = hourly(&[(0.30, 0.08); 2], 0.0, 0.0);
    let problem = Problem {
        soc_init: ratio!(0.1),
        soc_final: ratio!(0.9),
        charge_max_w: ems_core::watts!(1000.0),
        ..Problem::default()
    };
    let p = plan(&problem, &steps).unwrap();
    assert_eq!(p.status, PlanStatus::FeasibleRelaxed);
    assert!(p.battery_w.iter().all(|&b| close(b, -1000.0)));
    assert!(close(p.relaxations.final_soc_shortfall.get(), 0.9 - 0.1 - 0.19));
}

#[test]
fn json_keys_and_status() {
    let steps = hourly(&[(0.30, 0.08); 3], 0.0, 500.0);
    let p = plan(&Problem::default(), &steps).unwrap();
    let text = toml::to_string(&p).unwrap();
    let keys: Vec<&str> = text.lines().filter_map(|l| l.split(" = ").next()).collect();
    assert_eq!(keys, ["total_cost", "battery_w", "soc", "grid_w", "solve_time_s", "status"]);
    assert!(text.contains("status = \"optimal\""), "{text}");
    let slow = Problem { soc_init: ratio!(0.0), charge_max_w: ems_core::watts!(100.0), ..Problem::default() };
    let relaxed = plan(&slow, &steps).unwrap();
    assert!(toml::to_string(&relaxed).unwrap().contains("status = \"feasible_relaxed\""));
}

#[test]
fn rolling_horizon_from_a_measured_soc() {
    let mut prices = vec![(0.10, 0.05); 8];
    prices.extend(vec![(0.50, 0.05); 8]);
    let steps = hourly(&prices, 0.0, 800.0);
    let problem = Problem::default();
    let full = plan(&problem, &steps).unwrap();
    // Re-planning from the SOC the plan predicts, 20 minutes into step 3, continues the plan.
    let now = steps[3].start + SignedDuration::from_mins(20);
    let rest = remaining_steps(&steps, now);
    assert_eq!(steps.len() - rest.len(), 3);
    let again = replan(&problem, Ratio::try_new(full.soc[2]).unwrap(), &rest).unwrap();
    assert_eq!(again.battery_w.len(), rest.len());
    // The same energy still has to go in before the expensive hours.
    assert!(again.battery_w[0] <= 0.0 && again.battery_w[rest.len() - 1] >= 0.0);
    // A measured SOC below the window is accepted and planned back into it.
    let low = replan(&problem, ratio!(0.02), &rest).unwrap();
    assert!(low.soc[0] >= 0.1 - 1e-9, "reachable within the 40 minutes left of the step");
    // At 600 W: 200 Wh + 40 min × 600 W × 0.95 = 580 Wh < 1000 Wh, inside after the next hour.
    let slow = Problem { charge_max_w: ems_core::watts!(600.0), ..problem };
    let low = replan(&slow, ratio!(0.02), &rest).unwrap();
    assert_eq!(low.status, PlanStatus::FeasibleRelaxed);
    assert_eq!(low.relaxations.soc_window_steps, vec![0]);
    assert!(close(low.battery_w[0], -600.0));
}

#[test]
fn csv_to_plan() {
    let text = "timestamp,pv_w,load_w,import_price,export_price\n\
                2024-06-01T00:00:00Z,0,500,0.10,0.05\n\
                2024-06-01T00:15:00Z,0,500,0.10,0.05\n\
                2024-06-01T00:30:00Z,0,500,0.50,0.05\n\
                2024-06-01T00:45:00Z,0,500,0.50,0.05\n";
    let steps = parse_csv(text).unwrap();
    let p = plan(&Problem::default(), &steps).unwrap();
    assert_eq!(p.battery_w.len(), 4);
    assert!(p.battery_w[..2].iter().all(|&b| b <= 0.0) && p.battery_w[2..].iter().all(|&b| b >= 0.0));
    assert!(p.battery_w[..2].iter().any(|&b| b < -100.0), "{:?}", p.battery_w);
    assert!(p.total_cost.get() < 4.0 * 0.125 * (0.10 + 0.50) - 0.01);
}

#[test]
fn degenerate_batteries_and_horizons() {
    let steps = hourly(&[(0.30, 0.08), (-0.10, 0.50), (0.60, 0.08)], 1000.0, 400.0);
    // 600 W exported every hour.
    let idle: f64 = -0.6 * (0.08 + 0.50 + 0.08);
    // No power: the battery stays idle.
    let none = Problem { charge_max_w: Watts::ZERO, discharge_max_w: Watts::ZERO, ..Problem::default() };
    let p = plan(&none, &steps).unwrap();
    assert!(p.battery_w.iter().all(|&b| b == 0.0));
    assert!(close(p.total_cost.get(), idle), "{} vs {idle}", p.total_cost.get());
    // A window of one point: nothing can move either.
    let point = Problem { soc_min: ratio!(0.5), soc_max: ratio!(0.5), ..Problem::default() };
    let p = plan(&point, &steps).unwrap();
    assert!(p.battery_w.iter().all(|&b| b.abs() < 1e-6), "{:?}", p.battery_w);
    assert_eq!(p.status, PlanStatus::Optimal);
    // One step.
    let p = plan(&Problem::default(), &steps[..1]).unwrap();
    assert_eq!(p.battery_w.len(), 1);
    assert!(p.soc[0] >= 0.5 - 1e-9);
    // Lossless battery at a flat price: nothing to gain, nothing done.
    let lossless = Problem { eff_charge: ratio!(1.0), eff_discharge: ratio!(1.0), ..Problem::default() };
    let flat = hourly(&[(0.30, 0.30); 6], 0.0, 500.0);
    let p = plan(&lossless, &flat).unwrap();
    assert!(close(p.total_cost.get(), 6.0 * 0.5 * 0.30));
    assert!(p.battery_w.iter().all(|&b| b.abs() < 1e-6), "{:?}", p.battery_w);
}

#[test]
fn negative_prices_make_the_battery_soak_up_grid_energy() {
    // Paid to import (0.20) and charged to export (0.10). Best: export 712.5 W in the first hour
    // (costs 0.071) to make room, then import at full charge power in the second (earns 1.00),
    // ending full, rather than importing 4000 Wh / 0.95 over both hours (earns 0.842).
    let steps = hourly(&[(-0.20, -0.10); 2], 0.0, 0.0);
    let p = plan(&Problem::default(), &steps).unwrap();
    assert!(close(p.battery_w[0], 712.5) && close(p.battery_w[1], -5000.0), "{:?}", p.battery_w);
    assert!(close(*p.soc.last().unwrap(), 0.9));
    assert!(close(p.total_cost.get(), 0.07125 - 1.0), "{}", p.total_cost.get());
}
