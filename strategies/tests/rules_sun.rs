//! Sunset/sunrise of `ems_strategies::rules::sun` against published values and against an
//! independent algorithm computed here: the US Naval Observatory's "Almanac for Computers"
//! (1990) sunrise/sunset method, which uses its own approximations of the sun's position
//! (mean anomaly, ecliptic longitude, right ascension) rather than NOAA's equations.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_strategies::rules::sun::{next_sunset, sunrise, sunset};
use ems_strategies::rules::Location;
use jiff::civil::{date, Date};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Minutes after 00:00 UTC of `d` of sunrise (`rising`) or sunset, by the Almanac for
/// Computers method; `None` when the sun does not rise or set.
fn almanac(d: Date, lat: f64, lon: f64, rising: bool) -> Option<f64> {
    let zenith = 90.833_f64.to_radians();
    let n = f64::from(d.day_of_year());
    let lng_hour = lon / 15.0;
    let t = n + ((if rising { 6.0 } else { 18.0 }) - lng_hour) / 24.0;
    let m = 0.9856 * t - 3.289;
    let l =
        (m + 1.916 * m.to_radians().sin() + 0.020 * (2.0 * m).to_radians().sin() + 282.634).rem_euclid(360.0);
    let mut ra = (0.91764 * l.to_radians().tan()).atan().to_degrees().rem_euclid(360.0);
    ra += (l / 90.0).floor() * 90.0 - (ra / 90.0).floor() * 90.0;
    ra /= 15.0;
    let sin_dec = 0.39782 * l.to_radians().sin();
    let cos_dec = sin_dec.asin().cos();
    let latr = lat.to_radians();
    let cos_h = (zenith.cos() - sin_dec * latr.sin()) / (cos_dec * latr.cos());
    if !(-1.0..=1.0).contains(&cos_h) {
        return None;
    }
    let h = if rising { 360.0 - cos_h.acos().to_degrees() } else { cos_h.acos().to_degrees() } / 15.0;
    let local_t = h + ra - 0.06571 * t - 6.622;
    let ut = (local_t - lng_hour).rem_euclid(24.0);
    Some(ut * 60.0)
}

fn minutes_of_day_utc(t: Timestamp, d: Date) -> f64 {
    let midnight = d.to_zoned(TimeZone::UTC).unwrap().timestamp();
    t.duration_since(midnight).as_secs_f64() / 60.0
}

/// Difference of two minute-of-day values, modulo a day.
fn diff(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(1440.0);
    d.min(1440.0 - d)
}

#[test]
fn berlin_solstice_sunsets_match_published_times() {
    let berlin = Location::try_new(52.52, 13.40).unwrap();
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    for (d, want) in [(date(2026, 6, 21), (21, 33)), (date(2026, 12, 21), (15, 54))] {
        let s = sunset(d, berlin).unwrap().to_zoned(tz.clone());
        let got = i32::from(s.hour()) * 60 + i32::from(s.minute());
        let want = want.0 * 60 + want.1;
        assert!((got - want).abs() <= 2, "{d}: {s}, want {want} min");
    }
}

#[test]
fn sunrise_and_sunset_agree_with_the_almanac_algorithm_within_two_minutes() {
    let places = [
        ("Berlin", 52.52, 13.40),
        ("Madrid", 40.42, -3.70),
        ("Stockholm", 59.33, 18.07),
        ("Sydney", -33.87, 151.21),
        ("New York", 40.71, -74.01),
        ("Quito", -0.18, -78.47),
        ("Reykjavik", 64.15, -21.94),
    ];
    let mut checked = 0;
    for (name, lat, lon) in places {
        let loc = Location::try_new(lat, lon).unwrap();
        for month in 1..=12 {
            for day in [1, 15] {
                let d = date(2026, month, day);
                for rising in [true, false] {
                    let ours = if rising { sunrise(d, loc) } else { sunset(d, loc) };
                    let theirs = almanac(d, lat, lon, rising);
                    match (ours, theirs) {
                        (Some(t), Some(m)) => {
                            let got = minutes_of_day_utc(t, d);
                            assert!(
                                diff(got, m) <= 2.0,
                                "{name} {d} rising={rising}: ours {got:.1} min UTC, almanac {m:.1}"
                            );
                            checked += 1;
                        }
                        (None, None) => {}
                        (a, b) => panic!("{name} {d}: ours {a:?}, almanac {b:?}"),
                    }
                }
            }
        }
    }
    assert!(checked > 300, "{checked}");
}

#[test]
fn next_sunset_is_today_or_tomorrow() {
    let berlin = Location::try_new(52.52, 13.40).unwrap();
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let noon: Timestamp = "2026-06-21T10:00:00Z".parse().unwrap();
    assert_eq!(next_sunset(noon, berlin, &tz), sunset(date(2026, 6, 21), berlin));
    let night: Timestamp = "2026-06-21T21:00:00Z".parse().unwrap();
    assert_eq!(next_sunset(night, berlin, &tz), sunset(date(2026, 6, 22), berlin));
    // Polar night: none.
    let tromso = Location::try_new(69.65, 18.96).unwrap();
    let oslo = TimeZone::get("Europe/Oslo").unwrap();
    assert_eq!(next_sunset("2026-12-21T10:00:00Z".parse().unwrap(), tromso, &oslo), None);
}
