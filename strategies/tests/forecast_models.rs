//! Forecasters on synthetic inputs: learning, cold start, day types, daylight-saving days.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use ems_core::Watts;
use ems_strategies::forecast::{
    LoadDayType, LoadForecaster, LoadProfile, PriceFallback, PriceForecaster, PvCorrection, PvForecaster,
    PvSystem,
};
use ems_strategies::tariff::{Calendar, PriceSeries};
use ems_strategies::Price;
use jiff::civil::{date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

fn local(dt: DateTime) -> Timestamp {
    dt.to_zoned(berlin()).unwrap().timestamp()
}

const Q: SignedDuration = SignedDuration::from_secs(900);

/// Profile whose value encodes the slot: working day 1000 + slot, Saturday 2000 + slot,
/// Sunday 3000 + slot.
fn coded() -> LoadProfile {
    let day = |base: f32| (0..96_u16).map(|i| Watts::saturating(base + f32::from(i))).collect::<Vec<_>>();
    LoadProfile::new(day(1000.0), day(2000.0), day(3000.0)).unwrap()
}

#[test]
fn load_cold_start_day_types_and_holidays() {
    let cal = Calendar::new([date(2018, 10, 3)]);
    let f = LoadForecaster::new(coded(), 0.2, berlin(), cal).unwrap();
    // Tuesday 2018-10-02 17:00 local = slot 68.
    let v = f.forecast(local(date(2018, 10, 2).at(17, 0, 0, 0)), Q, 1);
    assert_eq!(v, vec![ems_core::watts!(1068.0)]);
    // Wednesday 2018-10-03 is a holiday: Sunday profile.
    assert_eq!(f.forecast(local(date(2018, 10, 3).at(17, 0, 0, 0)), Q, 1), vec![ems_core::watts!(3068.0)]);
    assert_eq!(f.forecast(local(date(2018, 10, 6).at(0, 0, 0, 0)), Q, 1), vec![ems_core::watts!(2000.0)]);
    assert_eq!(LoadDayType::of(date(2018, 10, 7), &Calendar::default()), LoadDayType::SundayOrHoliday);
}

#[test]
fn load_dst_days_follow_local_slots() {
    let f = LoadForecaster::new(coded(), 0.2, berlin(), Calendar::default()).unwrap();
    // Sunday 2018-03-25 has 92 quarter-hours: 00:00-02:00 then 03:00-24:00 local.
    let start = local(date(2018, 3, 25).at(0, 0, 0, 0));
    let v = f.forecast(start, Q, 92);
    assert_eq!(v[7], ems_core::watts!(3007.0)); // 01:45
    assert_eq!(v[8], ems_core::watts!(3012.0)); // 03:00
    assert_eq!(v[91], ems_core::watts!(3095.0)); // 23:45
                                                 // Sunday 2018-10-28 has 100: the 02:00-03:00 slots come twice.
    let start = local(date(2018, 10, 28).at(0, 0, 0, 0));
    let v = f.forecast(start, Q, 100);
    assert_eq!(&v[8..12], &v[12..16]);
    assert_eq!(v[8], ems_core::watts!(3008.0));
    assert_eq!(v[16], ems_core::watts!(3012.0));
    assert_eq!(v[99], ems_core::watts!(3095.0));
}

#[test]
fn load_learns_by_exponential_smoothing() {
    let flat = LoadProfile::flat(96, ems_core::watts!(100.0)).unwrap();
    let mut f = LoadForecaster::new(flat, 0.5, berlin(), Calendar::default()).unwrap();
    let t = local(date(2018, 6, 4).at(12, 0, 0, 0)); // Monday
    f.observe(t, ems_core::watts!(200.0));
    assert_eq!(f.profile().get(LoadDayType::Working, 48), ems_core::watts!(150.0));
    f.observe(t, ems_core::watts!(200.0));
    assert_eq!(f.profile().get(LoadDayType::Working, 48), ems_core::watts!(175.0));
    // Only that slot and day type moved.
    assert_eq!(f.profile().get(LoadDayType::Working, 47), ems_core::watts!(100.0));
    assert_eq!(f.profile().get(LoadDayType::Saturday, 48), ems_core::watts!(100.0));
    // Next Monday's forecast uses it; an hourly step averages four quarter-hours.
    let next = local(date(2018, 6, 11).at(12, 0, 0, 0));
    assert_eq!(f.forecast(next, Q, 1), vec![ems_core::watts!(175.0)]);
    let hourly = f.forecast(next, SignedDuration::from_hours(1), 1);
    assert!((hourly[0].get() - (175.0 + 300.0) / 4.0).abs() < 1e-3, "{hourly:?}");
    assert!(LoadForecaster::new(
        LoadProfile::flat(96, Watts::ZERO).unwrap(),
        0.0,
        berlin(),
        Calendar::default()
    )
    .is_err());
    assert!(LoadProfile::flat(7, Watts::ZERO).is_err());
}

fn system() -> PvSystem {
    PvSystem::new(52.5, 13.4, 30.0, 180.0, Watts::from_kw(10.0)).unwrap()
}

#[test]
fn pv_clear_sky_and_correction() {
    let cfg = PvCorrection::default();
    let mut f = PvForecaster::new(system(), cfg).unwrap();
    let hour = SignedDuration::from_hours(1);
    let day = date(2018, 6, 20);
    // Night is zero; a clear June noon in Berlin gives most of the 10 kWp after 14 % losses.
    let noon = local(day.at(13, 0, 0, 0));
    let clear = system().clear_sky_mean(noon, hour);
    assert!((7000.0..9500.0).contains(&clear.get()), "{clear}");
    assert_eq!(system().clear_sky_mean(local(day.at(0, 0, 0, 0)), hour), Watts::ZERO);
    // Cold start: the initial ratio.
    let v = f.forecast(noon, hour, 1);
    assert!((v[0].get() - clear.get() * 0.75).abs() < 1.0, "{v:?}");
    // A day at exactly half the clear-sky power.
    for h in 0..24 {
        let t = local(day.at(h, 0, 0, 0));
        let half = system().clear_sky_mean(t, hour).scale(0.5);
        f.observe(t, hour, half);
    }
    let recent = f.recent_ratio().unwrap();
    assert!((recent - 0.5).abs() < 1e-3, "{recent}");
    // Right after the last daylight observation the recent ratio dominates; a day later it has
    // decayed towards the long-run ratio, which has not moved yet (the day is not complete).
    let evening = local(day.at(20, 0, 0, 0));
    assert!((f.ratio_at(evening) - 0.5).abs() < 0.05);
    let next_noon = local(date(2018, 6, 21).at(13, 0, 0, 0));
    let r = f.ratio_at(next_noon);
    assert!(r > 0.5 && r < 0.75, "{r}");
    // The next day's first observation completes the day: the long-run ratio moves 10 % of the way.
    // (Solar days split at local mean solar midnight: 01:00 CEST in Berlin is still 20 June.)
    f.observe(local(date(2018, 6, 21).at(1, 0, 0, 0)), hour, Watts::ZERO);
    assert!((f.long_run_ratio() - 0.75).abs() < 1e-9);
    f.observe(local(date(2018, 6, 21).at(4, 0, 0, 0)), hour, Watts::ZERO);
    assert!((f.long_run_ratio() - (0.75 + 0.1 * (0.5 - 0.75))).abs() < 1e-3, "{}", f.long_run_ratio());
    // An irradiance forecast bypasses the correction.
    let ghi = [0.0, 1e9, f64::NAN];
    let p = f.from_ghi_forecast(noon, hour, &ghi);
    assert_eq!(p[0], Watts::ZERO);
    assert_eq!(p[2], Watts::ZERO, "non-finite GHI counts as none");
    assert!(p[1].get() <= 10_000.0 * 1.4, "GHI is bounded by the extraterrestrial value: {p:?}");
    assert!(PvSystem::new(95.0, 0.0, 30.0, 180.0, Watts::from_kw(1.0)).is_err());
    assert!(PvForecaster::new(system(), PvCorrection { max_ratio: ems_strategies::factor!(0.01), ..cfg })
        .is_err());
}

#[test]
fn price_fallbacks_keep_local_hours_across_dst() {
    // Hourly prices for Friday 2018-03-23 and Saturday 2018-03-24 (CET): value = 10·day + hour
    // in EUR/MWh so every price says when it is from.
    let start = local(date(2018, 3, 23).at(0, 0, 0, 0));
    let values = (0..48)
        .map(|h| {
            let day = if h < 24 { 23.0 } else { 24.0 };
            Some(Price::new((10.0 * day + f64::from(h % 24)) / 1000.0))
        })
        .collect();
    let s = PriceSeries::new(start, SignedDuration::from_hours(1), values).unwrap();
    let same = PriceForecaster::new(berlin(), PriceFallback::SameTimeLastKnownDay, Price::ZERO);
    // Known price.
    let (p, known) = same.price_at(&s, local(date(2018, 3, 24).at(5, 0, 0, 0)));
    assert!(known && (p.per_kwh() - 0.245).abs() < 1e-12);
    // Sunday 25 (CEST from 03:00): 17:00 local takes Saturday 17:00 local.
    let (p, known) = same.price_at(&s, local(date(2018, 3, 25).at(17, 0, 0, 0)));
    assert!(!known && (p.per_kwh() - 0.257).abs() < 1e-12, "{p}");
    // Monday 26: still the last known day (two days back), same local hour.
    let v = same.forecast(&s, local(date(2018, 3, 26).at(0, 0, 0, 0)), SignedDuration::from_hours(1), 24);
    assert!((v[17].per_kwh() - 0.257).abs() < 1e-12);
    // Mean of the days that are known (only two here).
    let mean = PriceForecaster::new(berlin(), PriceFallback::SevenDayMean, Price::ZERO);
    let (p, _) = mean.price_at(&s, local(date(2018, 3, 25).at(17, 0, 0, 0)));
    assert!((p.per_kwh() - (0.247 + 0.257) / 2.0).abs() < 1e-12, "{p}");
    // Nothing within 14 days: the default.
    let fallback = PriceForecaster::new(berlin(), PriceFallback::SevenDayMean, Price::new(0.05));
    let (p, known) = fallback.price_at(&s, local(date(2018, 5, 1).at(12, 0, 0, 0)));
    assert!(!known && p == Price::new(0.05));
}
