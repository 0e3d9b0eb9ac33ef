//! The learned state survives a restart: load profiles, the PV ratio, the forecast errors and
//! the ledgers come back, and observing continues without counting anything twice.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod live_support;

use ems_core::Watts;
use ems_strategies::accounting::YearMonth;
use ems_strategies::forecast::LoadDayType;
use ems_strategies::live::{LiveConfig, LiveEconomics, LiveError, LiveState, Measured, Period};
use jiff::Timestamp;
use live_support::{array, battery, engine_with, local, minutes, ratio, tou, w};

/// A site with PV at 60 % of clear sky, 400 W of load at night and 900 W by day, an idle
/// battery at 50 %.
fn measured(at: Timestamp) -> Measured {
    let pv = array().clear_sky_power(at + minutes(1) / 2).get() * 0.6;
    let hour = at.to_zoned(live_support::berlin()).hour();
    let load = if (7..22).contains(&hour) { 900.0 } else { 400.0 };
    Measured { grid: w(load - pv), pv: w(pv), battery: Watts::ZERO, soc: Some(ratio(0.5)) }
}

fn run(live: &mut LiveEconomics, from: Timestamp, minutes_n: i64) {
    for k in 0..minutes_n {
        let now = from + minutes(k);
        if live.replan_due(now, Some(ratio(0.5))).is_some() {
            live.replan(now, ratio(0.5)).unwrap();
        }
        live.observe(now, minutes(1), &measured(now)).unwrap();
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn assert_same_books(a: &LiveEconomics, b: &LiveEconomics) {
    for (la, lb) in a.ledgers().iter().zip(b.ledgers()) {
        let (ta, tb) = (la.total(), lb.total());
        assert!(close(ta.import_kwh.get(), tb.import_kwh.get()), "{ta:?} {tb:?}");
        assert!(close(ta.export_kwh.get(), tb.export_kwh.get()), "{ta:?} {tb:?}");
        assert!(close(ta.total_cost.get(), tb.total_cost.get()), "{ta:?} {tb:?}");
        assert_eq!(la.days().len(), lb.days().len());
    }
    let month = YearMonth { year: 2026, month: 6 };
    let (ra, rb) = (a.report(month), b.report(month));
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!((x.date, x.quarter_hours), (y.date, y.quarter_hours));
        assert!(close(x.load_kwh.get(), y.load_kwh.get()) && close(x.pv_kwh.get(), y.pv_kwh.get()));
        assert!(close(x.cost_self_consumption.get(), y.cost_self_consumption.get()));
    }
}

#[test]
fn a_restart_forgets_nothing_and_counts_nothing_twice() {
    let mut live = engine_with(tou(), array());
    let start = local("2026-06-01T00:00");
    run(&mut live, start, 2 * 24 * 60 + 7); // two days and 7 minutes: a slot is open
    let json = serde_json::to_string(&live.state()).unwrap();
    let state: LiveState = serde_json::from_str(&json).unwrap();
    assert_eq!(state.version, 1);
    let cfg = live.config().clone();
    let mut restored = LiveEconomics::new(cfg, Some(state)).unwrap();

    // The load profile learned the two working days (900 W by day, 400 W at night) …
    let profile = live.load_forecaster().profile();
    let noon = 12 * 4;
    assert!(profile.get(LoadDayType::Working, noon).get() > 600.0);
    assert_eq!(profile.get(LoadDayType::Saturday, noon), w(500.0), "no Saturday seen");
    for day in LoadDayType::ALL {
        for (a, b) in profile.day(day).iter().zip(restored.load_forecaster().profile().day(day)) {
            assert!((a.get() - b.get()).abs() < 1e-3);
        }
    }
    // … the PV ratio the measured 60 % of clear sky …
    let (pa, pb) = (live.pv_forecaster(), restored.pv_forecaster());
    assert!((pa.recent_ratio().unwrap() - 0.6).abs() < 0.02, "{:?}", pa.recent_ratio());
    assert!(pa.long_run_ratio() < 0.75, "moved from the initial 0.75 toward 0.6");
    assert!(close(pa.long_run_ratio(), pb.long_run_ratio()));
    assert!(close(pa.recent_ratio().unwrap(), pb.recent_ratio().unwrap()));
    let later = start + minutes(3 * 24 * 60 + 600);
    assert!(close(pa.ratio_at(later), pb.ratio_at(later)));
    // … the forecast errors …
    let now = start + minutes(2 * 24 * 60 + 7);
    let (ea, eb) = (live.forecast_view(now).errors, restored.forecast_view(now).errors);
    assert_eq!(ea.len(), 2);
    assert_eq!(ea.iter().map(|e| e.n).collect::<Vec<_>>(), eb.iter().map(|e| e.n).collect::<Vec<_>>());
    assert!(ea[0].n > 100, "every daylight slot after the first plan was scored: {}", ea[0].n);
    // … and the money.
    assert_same_books(&live, &restored);

    // Repeating the last interval (e.g. replayed after the restart) is refused, not counted.
    let last = now - minutes(1);
    let err = restored.observe(last, minutes(1), &measured(last)).unwrap_err();
    assert!(matches!(err, LiveError::Measurement { field: "at", .. }), "{err}");
    // Both continue with the same intervals and agree.
    run(&mut live, now, 600);
    run(&mut restored, now, 600);
    assert_same_books(&live, &restored);
    let (sa, sb) = (live.savings(Period::Month, now), restored.savings(Period::Month, now));
    assert!(close(sa.saving_vs_no_battery.get(), sb.saving_vs_no_battery.get()));
}

#[test]
fn a_state_of_another_version_or_slot_length_is_refused() {
    let live = engine_with(tou(), array());
    let mut json: serde_json::Value = serde_json::to_value(live.state()).unwrap();
    json["version"] = serde_json::json!(2);
    let state: LiveState = serde_json::from_value(json).unwrap();
    let cfg = LiveConfig::new(tou(), array(), battery());
    let err = LiveEconomics::new(cfg.clone(), Some(state)).unwrap_err();
    assert_eq!(err, LiveError::StateVersion { found: 2, expected: 1 });
    let hourly = LiveConfig { slot: minutes(60), ..cfg };
    let err = LiveEconomics::new(hourly, Some(live.state())).unwrap_err();
    assert!(matches!(err, LiveError::State { field: "load_slots_per_day", .. }), "{err}");
}

#[test]
fn bad_settings_and_intervals_are_refused_naming_the_value() {
    let cfg = LiveConfig::new(tou(), array(), battery());
    let err = LiveEconomics::new(LiveConfig { slot: minutes(20), ..cfg.clone() }, None).unwrap_err();
    assert_eq!(err.to_string(), "live economics: slot = 1200 s: 15, 30 or 60 minutes");
    let err = LiveEconomics::new(LiveConfig { soc_off_plan: ratio(0.0), ..cfg.clone() }, None).unwrap_err();
    assert!(matches!(err, LiveError::Config { field: "soc_off_plan", .. }));
    let mut live = LiveEconomics::new(cfg, None).unwrap();
    let at = local("2026-06-01T00:00");
    let m = measured(at);
    let err = live.observe(at, minutes(16), &m).unwrap_err();
    assert_eq!(err.to_string(), format!("measurement at {at}: dt = 960 s: more than 0 and at most 15 min"));
    assert!(live.observe(at, minutes(0), &m).is_err());
    // A 15-minute interval works as well as 1-minute ones.
    live.observe(at, minutes(15), &m).unwrap();
    assert_eq!(live.report(YearMonth { year: 2026, month: 6 })[0].quarter_hours, 1);
}
