//! The three ledgers on a day with known flows, by hand; and daylight-saving days.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod live_support;

use ems_core::Watts;
use ems_strategies::accounting::YearMonth;
use ems_strategies::forecast::PvSystem;
use ems_strategies::live::{LiveConfig, LiveEconomics, Measured, Period};
use ems_strategies::optimizer::Problem;
use ems_strategies::tariff::Tariff;
use ems_strategies::{Money, Price};
use jiff::Timestamp;
use live_support::{berlin, local, minutes, ratio, w};

fn no_pv() -> PvSystem {
    PvSystem::new(52.5, 13.4, 30.0, 180.0, Watts::ZERO).unwrap()
}

/// 4 kWh, 1.5 kW each way, 90 % each way, SOC 10..90 %.
fn small_battery() -> Problem {
    Problem {
        capacity_wh: ems_core::watt_hours!(4000.0),
        charge_max_w: w(1500.0),
        discharge_max_w: w(1500.0),
        eff_charge: ratio(0.9),
        eff_discharge: ratio(0.9),
        soc_min: ratio(0.1),
        soc_max: ratio(0.9),
        soc_final: ratio(0.1),
        ..Problem::default()
    }
}

fn fixed() -> Tariff {
    Tariff::fixed(berlin(), Price::new(0.30), Price::new(0.08)).with_monthly_fee(Money::new(10.0))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Four hours from local midnight, in 15-minute intervals: (load, pv, battery) in W.
const HOURS: [(f32, f32, f32); 4] = [
    (1000.0, 0.0, 1000.0),     // the battery covers the load
    (1000.0, 3000.0, -2000.0), // it takes the surplus
    (2000.0, 0.0, 0.0),        // import 2 kWh
    (1000.0, 4000.0, 0.0),     // export 3 kWh
];

#[test]
fn a_day_with_known_flows_costs_what_the_hand_calculation_says() {
    let cfg = LiveConfig::new(fixed(), no_pv(), small_battery());
    let mut live = LiveEconomics::new(cfg, None).unwrap();
    let t0 = local("2026-06-03T00:00");
    for (h, (load, pv, battery)) in HOURS.iter().enumerate() {
        for q in 0..4 {
            let at = t0 + minutes(i64::try_from(h * 60 + q * 15).unwrap());
            let m = Measured {
                grid: w(load - pv - battery),
                pv: w(*pv),
                battery: w(*battery),
                soc: Some(ratio(0.5)),
            };
            live.observe(at, minutes(15), &m).unwrap();
        }
    }
    let day = live.savings(Period::Day, t0 + minutes(300));
    assert_eq!(day.label, "2026-06-03");
    assert_eq!(day.currency, "EUR");
    // EMS: import 2 kWh × 0.30 − export 3 kWh × 0.08 = 0.36.
    assert!(close(day.ems.import_kwh.get(), 2.0) && close(day.ems.export_kwh.get(), 3.0));
    assert!(close(day.ems.cost.get(), 0.36), "{:?}", day.ems);
    // No battery (grid = load − pv): import 1 + 2 kWh, export 2 + 3 kWh: 0.90 − 0.40 = 0.50.
    assert!(close(day.no_battery.import_kwh.get(), 3.0) && close(day.no_battery.export_kwh.get(), 5.0));
    assert!(close(day.no_battery.cost.get(), 0.50), "{:?}", day.no_battery);
    // Self-consumption, from the measured 50 % = 2000 Wh (window 400..3600 Wh, 1.5 kW, 90 %):
    // h0: discharges 1000 W, 2000 − 1000/0.9 = 888.9 Wh, grid 0;
    // h1: charges 1500 W (limit), 888.9 + 1350 = 2238.9 Wh, grid −500 W;
    // h2: discharges 1500 W (limit), 2238.9 − 1666.7 = 572.2 Wh, grid +500 W;
    // h3: charges 1500 W, 572.2 + 1350 = 1922.2 Wh, grid −1500 W.
    // Import 0.5 kWh × 0.30 − export 2.0 kWh × 0.08 = 0.15 − 0.16 = −0.01.
    let sc = day.self_consumption;
    assert!(close(sc.import_kwh.get(), 0.5) && close(sc.export_kwh.get(), 2.0), "{sc:?}");
    assert!(close(sc.cost.get(), -0.01), "{sc:?}");
    assert!(close(day.saving_vs_no_battery.get(), 0.14));
    assert!(close(day.saving_vs_self_consumption.get(), -0.37));
    // The month and the year add the fee to each case; the savings stay.
    for period in [Period::Month, Period::Year] {
        let v = live.savings(period, t0);
        assert!(close(v.ems.cost.get(), 10.36) && close(v.no_battery.cost.get(), 10.50), "{v:?}");
        assert!(close(v.self_consumption.cost.get(), 9.99));
        assert!(close(v.saving_vs_no_battery.get(), 0.14));
    }
    assert_eq!(live.savings(Period::Month, t0).label, "2026-06");
    assert_eq!(live.savings(Period::Year, t0).start, jiff::civil::date(2026, 1, 1));
    // The day's energy flows.
    let rows = live.report(YearMonth { year: 2026, month: 6 });
    assert_eq!(rows.len(), 1);
    let r = rows[0];
    assert_eq!(r.quarter_hours, 16);
    let kwh =
        [r.import_kwh, r.export_kwh, r.pv_kwh, r.load_kwh, r.battery_charge_kwh, r.battery_discharge_kwh]
            .map(|k| k.get());
    for (got, want) in kwh.iter().zip([2.0, 3.0, 7.0, 5.0, 2.0, 1.0]) {
        assert!(close(*got, want), "{kwh:?}");
    }
    assert!(close(r.cost_ems.get(), 0.36) && close(r.cost_no_battery.get(), 0.50));
    assert!(close(r.cost_self_consumption.get(), -0.01) && close(r.saving_vs_self_consumption.get(), -0.37));
    assert!(live.report(YearMonth { year: 2026, month: 5 }).is_empty());
    // Another day: nothing yet.
    assert_eq!(live.savings(Period::Day, t0 + minutes(24 * 60)).ems.cost, Money::ZERO);
}

/// One kW of load from the grid, minute by minute over `[from, to)`.
fn steady(live: &mut LiveEconomics, from: Timestamp, to: Timestamp) -> i64 {
    let mut n = 0;
    let mut t = from;
    while t < to {
        let m = Measured { grid: w(1000.0), pv: Watts::ZERO, battery: Watts::ZERO, soc: Some(ratio(0.5)) };
        live.observe(t, minutes(1), &m).unwrap();
        t += minutes(1);
        n += 1;
    }
    n
}

#[test]
fn daylight_saving_days_have_92_and_100_quarter_hours_and_the_days_sum_right() {
    for (month, before, day, after, quarters, hours) in [
        (3, "2026-03-28T00:00", "2026-03-29T00:00", "2026-03-30T00:00", 92, 23.0),
        (10, "2026-10-24T00:00", "2026-10-25T00:00", "2026-10-26T00:00", 100, 25.0),
    ] {
        let cfg = LiveConfig::new(fixed(), no_pv(), small_battery());
        let mut live = LiveEconomics::new(cfg, None).unwrap();
        let end = local(after) + minutes(24 * 60);
        let n = steady(&mut live, local(before), end);
        let rows = live.report(YearMonth { year: 2026, month });
        let counts: Vec<u32> = rows.iter().map(|r| r.quarter_hours).collect();
        assert_eq!(counts, vec![96, quarters, 96], "{day}");
        let dst = rows[1];
        assert_eq!(dst.date.to_string(), day[..10]);
        assert!(close(dst.load_kwh.get(), hours) && close(dst.import_kwh.get(), hours), "{dst:?}");
        assert!(close(dst.cost_ems.get(), hours * 0.30));
        // The days add up to every minute observed.
        #[allow(clippy::cast_precision_loss)] // a few thousand minutes
        let observed_kwh = n as f64 / 60.0;
        let sum: f64 = rows.iter().map(|r| r.import_kwh.get()).sum();
        assert!(close(sum, observed_kwh), "{sum} vs {observed_kwh}");
        let day_view = live.savings(Period::Day, local(day) + minutes(600));
        assert!(close(day_view.ems.import_kwh.get(), hours));
        // The plan view of the day keeps its past slots from local midnight.
        let mut cfg = LiveConfig::new(fixed(), no_pv(), small_battery());
        cfg.horizon = jiff::SignedDuration::from_hours(2);
        let mut planned = LiveEconomics::new(cfg, None).unwrap();
        let mut t = local(day);
        let day_end = local(after);
        while t < day_end {
            if planned.replan_due(t, None).is_some() {
                planned.replan(t, ratio(0.5)).unwrap();
            }
            steady(&mut planned, t, t + minutes(1));
            t += minutes(1);
        }
        let view = planned.plan_view(day_end - minutes(1));
        let today =
            view.slots.iter().filter(|s| s.planned.start >= local(day) && s.planned.start < day_end).count();
        assert_eq!(today, usize::try_from(quarters).unwrap(), "{day}");
        assert!(view.slots.iter().filter(|s| s.planned.start < day_end).all(|s| s.actual.is_some()));
    }
}
