//! The small additions the live engine needs from the other modules: a ledger that is stored
//! and restored mid-quarter, a tariff with live spot prices, a PV forecaster's learned state.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod live_support;

use ems_strategies::accounting::Ledger;
use ems_strategies::forecast::{PvCorrection, PvForecaster, PvLearned};
use ems_strategies::tariff::{DemandBasis, DemandCharge, PriceSource, Tariff};
use ems_strategies::{Money, Price};
use live_support::{array, berlin, dynamic, local, minutes, series, w};
use std::sync::Arc;

#[test]
fn a_ledger_restored_mid_quarter_continues_like_one_never_stopped() {
    let tariff = Tariff::fixed(berlin(), Price::new(0.3), Price::new(0.1))
        .with_monthly_fee(Money::new(5.0))
        .with_demand_charge(DemandCharge::new(10.0, DemandBasis::MonthlyPeak).unwrap())
        .unwrap();
    let mut whole = Ledger::new(tariff.clone(), berlin());
    let t0 = local("2026-06-30T23:00");
    let power =
        |k: i64| w(if k % 7 == 0 { -800.0 } else { 400.0 + 100.0 * f32::from(u8::try_from(k % 5).unwrap()) });
    for k in 0..37 {
        whole.record(t0 + minutes(k), power(k), 60.0).unwrap();
    }
    // Stored 37 minutes in (an open quarter), through JSON, and restored.
    let json = serde_json::to_string(&whole.state()).unwrap();
    let mut restored = Ledger::restore(tariff, berlin(), serde_json::from_str(&json).unwrap());
    assert!(restored.record(t0 + minutes(36), power(36), 60.0).is_err(), "no double count");
    for k in 37..120 {
        whole.record(t0 + minutes(k), power(k), 60.0).unwrap();
        restored.record(t0 + minutes(k), power(k), 60.0).unwrap();
    }
    let (a, b) = (whole.months(), restored.months());
    assert_eq!(a.len(), 2, "June and July");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.month, y.month);
        assert!((x.total_cost.get() - y.total_cost.get()).abs() < 1e-9, "{x:?} {y:?}");
        assert!((x.demand_peak.get() - y.demand_peak.get()).abs() < 1e-3);
        assert!((x.import_kwh.get() - y.import_kwh.get()).abs() < 1e-9);
    }
    assert_eq!(whole.days().len(), restored.days().len());
}

#[test]
fn a_tariff_takes_live_spot_prices() {
    let now = local("2026-06-03T10:00");
    let t = dynamic();
    assert_eq!(t.import_quote(now).source, PriceSource::Fallback);
    let live = t.clone().with_spot(Arc::new(series(now, &[Some(0.2), None]))).unwrap();
    assert_eq!(live.import_quote(now).source, PriceSource::Spot);
    assert!((live.import_price(now).per_kwh() - 0.3 * 1.19).abs() < 1e-12);
    assert_eq!(live.import_quote(now + minutes(15)).source, PriceSource::Fallback);
    let off_grid = t.with_spot(Arc::new(series(now + minutes(5), &[Some(0.2)]))).unwrap_err();
    assert_eq!(off_grid.field, "spot");
    let fixed = Tariff::fixed(berlin(), Price::new(0.3), Price::new(0.1));
    let same = fixed.with_spot(Arc::new(series(now, &[Some(0.2)]))).unwrap();
    assert_eq!(same.import_price(now), Price::new(0.3));
    assert!(same.spot_series().is_none());
}

#[test]
fn a_pv_forecaster_keeps_what_it_learned() {
    let mut pv = PvForecaster::new(array(), PvCorrection::default()).unwrap();
    let day = local("2026-06-03T00:00");
    for d in 0..3 {
        for q in 0..96 {
            let start = day + minutes(d * 1440 + q * 15);
            let clear = array().clear_sky_mean(start, minutes(15));
            pv.observe(start, minutes(15), clear.scale(0.5));
        }
    }
    let json = serde_json::to_string(&pv.learned()).unwrap();
    let learned: PvLearned = serde_json::from_str(&json).unwrap();
    let back = PvForecaster::new(array(), PvCorrection::default()).unwrap().with_learned(learned);
    assert!((pv.recent_ratio().unwrap() - 0.5).abs() < 1e-3);
    assert!(pv.long_run_ratio() < 0.75);
    // JSON keeps f64 to the last digit or so (serde_json without `float_roundtrip`).
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(back.recent_ratio().unwrap(), pv.recent_ratio().unwrap()));
    assert!(close(back.long_run_ratio(), pv.long_run_ratio()));
    let later = day + minutes(4 * 1440 + 720);
    for (x, y) in back.forecast(later, minutes(15), 4).iter().zip(pv.forecast(later, minutes(15), 4)) {
        assert!((x.get() - y.get()).abs() < 1e-3, "{x:?} {y:?}");
    }
}
