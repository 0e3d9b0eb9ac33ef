//! Sunrise and sunset at a site: the NOAA solar calculation (the equations of NOAA's "Solar
//! Calculator" spreadsheet, after Meeus, *Astronomical Algorithms*) with the official zenith of
//! 90.833° (refraction and the sun's radius). Accurate to about a minute between ±66° latitude;
//! nearer the poles the times become sensitive to refraction.
//!
//! Polar day and polar night have no sunset: [`sunset`] returns `None`. `until: sunset` of a
//! rule then ends at the end of the local day ([`super::RuleEngine`]).

use super::error::RuleError;
use crate::units::Degrees;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// The official zenith of sunrise and sunset, degrees.
pub const OFFICIAL_ZENITH_DEG: f64 = 90.833;

/// A site's location: latitude `−90..=90` (north positive) and longitude `−180..=180` (east
/// positive), in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    latitude: Degrees,
    longitude: Degrees,
}

impl Location {
    /// A location; the fields are named in the error.
    ///
    /// # Errors
    /// [`RuleError`] at `latitude` or `longitude` with the value when it is not finite or out
    /// of range.
    pub fn try_new(latitude: f64, longitude: f64) -> Result<Self, RuleError> {
        let check = |field: &str, v: f64, max: f64| {
            if v.is_finite() && (-max..=max).contains(&v) {
                Degrees::try_new(v).map_err(|e| RuleError::new(field, v, e.to_string()))
            } else {
                Err(RuleError::new(field, v, format!("must be a number in -{max}..={max} degrees")))
            }
        };
        Ok(Self {
            latitude: check("latitude", latitude, 90.0)?,
            longitude: check("longitude", longitude, 180.0)?,
        })
    }

    /// Latitude, north positive.
    #[must_use]
    pub const fn latitude(self) -> Degrees {
        self.latitude
    }

    /// Longitude, east positive.
    #[must_use]
    pub const fn longitude(self) -> Degrees {
        self.longitude
    }
}

/// Which event of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Sunrise,
    Sunset,
}

/// Sunset of the solar day `date` at `at` (the day whose local solar noon falls on `date` at
/// the site's longitude), or `None` in polar day or night.
#[must_use]
pub fn sunset(date: Date, at: Location) -> Option<Timestamp> {
    event(date, at, Event::Sunset)
}

/// Sunrise of the solar day `date` at `at`, or `None` in polar day or night.
#[must_use]
pub fn sunrise(date: Date, at: Location) -> Option<Timestamp> {
    event(date, at, Event::Sunrise)
}

/// The first sunset strictly after `t` at `at`, looking at the local dates (in `tz`) of `t` and
/// the next day; `None` when neither has a sunset after `t` (polar day or night).
#[must_use]
pub fn next_sunset(t: Timestamp, at: Location, tz: &TimeZone) -> Option<Timestamp> {
    let today = t.to_zoned(tz.clone()).date();
    let tomorrow = today.tomorrow().ok()?;
    [today, tomorrow].into_iter().filter_map(|d| sunset(d, at)).find(|s| *s > t)
}

/// Julian day of 00:00 UTC of a date.
fn julian_day(date: Date) -> f64 {
    // Days since 2000-01-01 (JD 2451544.5 at 00:00 UTC).
    let days = date.since(jiff::civil::date(2000, 1, 1)).map_or(0, |s| s.get_days());
    2_451_544.5 + f64::from(days)
}

/// Equation of time (minutes) and solar declination (radians) at Julian day `jd`.
fn solar(jd: f64) -> (f64, f64) {
    let t = (jd - 2_451_545.0) / 36_525.0;
    let l0 = (280.466_46 + t * (36_000.769_83 + t * 0.000_303_2)).rem_euclid(360.0);
    let m = 357.529_11 + t * (35_999.050_29 - 0.000_153_7 * t);
    let e = 0.016_708_634 - t * (0.000_042_037 + 0.000_000_126_7 * t);
    let mr = m.to_radians();
    let c = mr.sin() * (1.914_602 - t * (0.004_817 + 0.000_014 * t))
        + (2.0 * mr).sin() * (0.019_993 - 0.000_101 * t)
        + (3.0 * mr).sin() * 0.000_289;
    let true_long = l0 + c;
    let omega = (125.04 - 1934.136 * t).to_radians();
    let app_long = true_long - 0.005_69 - 0.004_78 * omega.sin();
    let mean_obliq = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.000_59 - t * 0.001_813))) / 60.0) / 60.0;
    let obliq = (mean_obliq + 0.002_56 * omega.cos()).to_radians();
    let decl = (obliq.sin() * app_long.to_radians().sin()).asin();
    let y = (obliq / 2.0).tan().powi(2);
    let l0r = l0.to_radians();
    let eq_time = 4.0
        * (y * (2.0 * l0r).sin() - 2.0 * e * mr.sin() + 4.0 * e * y * mr.sin() * (2.0 * l0r).cos()
            - 0.5 * y * y * (4.0 * l0r).sin()
            - 1.25 * e * e * (2.0 * mr).sin())
        .to_degrees();
    (eq_time, decl)
}

/// Minutes after 00:00 UTC of `date` of the event, computed at Julian day `jd`; `None` when
/// the sun does not cross the zenith that day.
fn minutes_utc(jd: f64, lat: f64, lon: f64, ev: Event) -> Option<f64> {
    let (eq_time, decl) = solar(jd);
    let latr = lat.to_radians();
    let cos_ha = OFFICIAL_ZENITH_DEG.to_radians().cos() / (latr.cos() * decl.cos()) - latr.tan() * decl.tan();
    if !(-1.0..=1.0).contains(&cos_ha) {
        return None;
    }
    let ha = cos_ha.acos().to_degrees();
    let noon = 720.0 - 4.0 * lon - eq_time;
    Some(match ev {
        Event::Sunrise => noon - 4.0 * ha,
        Event::Sunset => noon + 4.0 * ha,
    })
}

fn event(date: Date, at: Location, ev: Event) -> Option<Timestamp> {
    let (lat, lon) = (at.latitude.get(), at.longitude.get());
    let jd0 = julian_day(date);
    // First at local solar noon, then once more at the event's own time (the sun's position
    // moves a little over the half day in between).
    let first = minutes_utc(jd0 + 0.5 - lon / 360.0, lat, lon, ev)?;
    let minutes = minutes_utc(jd0 + first / 1440.0, lat, lon, ev)?;
    let midnight = date.to_zoned(TimeZone::UTC).ok()?.timestamp();
    // Whole seconds: the calculation is good to about a minute.
    let d = SignedDuration::try_from_secs_f64((minutes * 60.0).round()).ok()?;
    midnight.checked_add(d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn berlin() -> Location {
        Location::try_new(52.52, 13.40).unwrap()
    }

    fn local(t: Timestamp) -> String {
        t.to_zoned(TimeZone::get("Europe/Berlin").unwrap()).strftime("%H:%M").to_string()
    }

    #[test]
    fn location_is_validated_naming_the_field() {
        assert_eq!(Location::try_new(91.0, 0.0).unwrap_err().path, "latitude");
        assert_eq!(Location::try_new(0.0, f64::NAN).unwrap_err().path, "longitude");
    }

    #[test]
    fn polar_night_and_day_have_no_sunset() {
        let tromso = Location::try_new(69.65, 18.96).unwrap();
        assert!(sunset(date(2026, 12, 21), tromso).is_none());
        assert!(sunset(date(2026, 6, 21), tromso).is_none());
        assert!(sunset(date(2026, 3, 21), tromso).is_some());
    }

    #[test]
    fn berlin_sunrise_is_before_sunset() {
        let (r, s) =
            (sunrise(date(2026, 6, 21), berlin()).unwrap(), sunset(date(2026, 6, 21), berlin()).unwrap());
        assert!(r < s);
        // Berlin's solstice sunrise is about 04:43 CEST.
        assert!(["04:42", "04:43", "04:44"].contains(&local(r).as_str()), "{}", local(r));
    }
}
