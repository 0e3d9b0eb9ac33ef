//! Solar geometry, clear-sky irradiance and plane-of-array transposition.
//!
//! Models (each simple, documented and good to a few percent, which is well inside the error of
//! any weather-driven PV forecast):
//! - sun position: Spencer (1971) Fourier series for declination and equation of time, with the
//!   standard hour-angle formulas (about 0.5° accuracy, no refraction);
//! - extraterrestrial normal irradiance: Spencer's eccentricity correction × 1361 W/m²;
//! - clear-sky global horizontal irradiance: Haurwitz (1945), `1098 · cos z · exp(−0.057 / cos z)`;
//! - split of global into beam and diffuse: Erbs et al. (1982) diffuse fraction from the
//!   clearness index;
//! - plane of array: isotropic sky (Liu–Jordan) with ground reflection.
//!
//! Angles are degrees; azimuths are measured clockwise from north (90° east, 180° south);
//! irradiances are W/m².

use crate::units::{Degrees, WattsPerSquareMetre};
use jiff::Timestamp;

/// Solar constant, W/m².
const SOLAR_CONSTANT: f64 = 1361.0;
/// Below this cos(zenith) the beam/diffuse split is not trusted (sun < ~3.7° above horizon).
const MIN_COS_ZENITH: f64 = 0.065;

/// The sun's position seen from a site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolarPosition {
    /// Zenith angle (0° overhead, > 90° below the horizon).
    pub zenith: Degrees,
    /// Azimuth clockwise from north.
    pub azimuth: Degrees,
}

impl SolarPosition {
    /// cos(zenith); ≤ 0 when the sun is below the horizon.
    #[must_use]
    pub fn cos_zenith(&self) -> f64 {
        self.zenith.get().to_radians().cos()
    }
}

/// Day angle (radians) of `at` and the UTC hour of day.
fn day_angle(at: Timestamp) -> (f64, f64, f64) {
    let dt = jiff::tz::Offset::UTC.to_datetime(at);
    let doy = f64::from(dt.date().day_of_year());
    let hour = f64::from(dt.hour())
        + f64::from(dt.minute()) / 60.0
        + (f64::from(dt.second()) + f64::from(dt.subsec_nanosecond()) * 1e-9) / 3600.0;
    let gamma = 2.0 * core::f64::consts::PI / 365.0 * (doy - 1.0 + (hour - 12.0) / 24.0);
    (gamma, hour, doy)
}

/// Sun position at `at` for a site at `latitude_deg` (north +) and `longitude_deg` (east +).
#[must_use]
pub fn solar_position(at: Timestamp, latitude_deg: f64, longitude_deg: f64) -> SolarPosition {
    let (g, hour, _) = day_angle(at);
    let eot_min = 229.18
        * (0.000_075 + 0.001_868 * g.cos()
            - 0.032_077 * g.sin()
            - 0.014_615 * (2.0 * g).cos()
            - 0.040_849 * (2.0 * g).sin());
    let decl = 0.006_918 - 0.399_912 * g.cos() + 0.070_257 * g.sin() - 0.006_758 * (2.0 * g).cos()
        + 0.000_907 * (2.0 * g).sin()
        - 0.002_697 * (3.0 * g).cos()
        + 0.001_48 * (3.0 * g).sin();
    let true_solar_min = hour * 60.0 + eot_min + 4.0 * longitude_deg;
    let hour_angle = (true_solar_min / 4.0 - 180.0).to_radians();
    let lat = latitude_deg.to_radians();
    let cos_z = (lat.sin() * decl.sin() + lat.cos() * decl.cos() * hour_angle.cos()).clamp(-1.0, 1.0);
    let zenith = cos_z.acos();
    // Azimuth from south (west +), then turned to "clockwise from north".
    let from_south = hour_angle.sin().atan2(hour_angle.cos() * lat.sin() - decl.tan() * lat.cos());
    let azimuth = (from_south.to_degrees() + 180.0).rem_euclid(360.0);
    SolarPosition { zenith: Degrees::saturating(zenith.to_degrees()), azimuth: Degrees::saturating(azimuth) }
}

/// Extraterrestrial irradiance normal to the sun's rays at `at`, W/m² (≈1316…1408 over a year).
#[must_use]
pub fn extraterrestrial_normal(at: Timestamp) -> f64 {
    let (_, _, doy) = day_angle(at);
    let b = 2.0 * core::f64::consts::PI * (doy - 1.0) / 365.0;
    SOLAR_CONSTANT
        * (1.000_11
            + 0.034_221 * b.cos()
            + 0.001_28 * b.sin()
            + 0.000_719 * (2.0 * b).cos()
            + 0.000_077 * (2.0 * b).sin())
}

/// Haurwitz clear-sky global horizontal irradiance for a sun at `zenith_deg`, W/m² (0 at night).
#[must_use]
pub fn clear_sky_ghi(zenith_deg: f64) -> f64 {
    let cos_z = zenith_deg.to_radians().cos();
    if cos_z <= 0.0 {
        0.0
    } else {
        1098.0 * cos_z * (-0.057 / cos_z).exp()
    }
}

/// Erbs diffuse fraction of global irradiance for a clearness index `kt` (clamped to 0..=1).
#[must_use]
pub fn erbs_diffuse_fraction(kt: f64) -> f64 {
    let kt = if kt.is_finite() { kt.clamp(0.0, 1.0) } else { 0.0 };
    if kt <= 0.22 {
        1.0 - 0.09 * kt
    } else if kt <= 0.8 {
        0.9511 - 0.1604 * kt + 4.388 * kt.powi(2) - 16.638 * kt.powi(3) + 12.336 * kt.powi(4)
    } else {
        0.165
    }
}

/// Irradiance components on the horizontal (GHI, DHI) and normal to the sun (DNI), W/m².
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Irradiance {
    /// Global horizontal irradiance.
    pub ghi: WattsPerSquareMetre,
    /// Direct normal irradiance.
    pub dni: WattsPerSquareMetre,
    /// Diffuse horizontal irradiance.
    pub dhi: WattsPerSquareMetre,
}

impl Irradiance {
    /// Split a global horizontal irradiance into beam and diffuse with the Erbs model, for the
    /// sun at `at` seen from the site. Non-finite or negative GHI counts as 0, and GHI is
    /// bounded by the extraterrestrial irradiance on the horizontal (clearness index ≤ 1), so a
    /// garbage forecast value cannot make the array produce more than sunlight can.
    #[must_use]
    pub fn from_ghi(ghi: f64, at: Timestamp, latitude_deg: f64, longitude_deg: f64) -> Self {
        let ghi = if ghi.is_finite() { ghi.max(0.0) } else { 0.0 };
        if ghi == 0.0 {
            return Self::default();
        }
        let pos = solar_position(at, latitude_deg, longitude_deg);
        let cos_z = pos.cos_zenith();
        let e0 = extraterrestrial_normal(at);
        let ghi = ghi.min(e0 * cos_z.max(MIN_COS_ZENITH));
        if cos_z < MIN_COS_ZENITH {
            // Sun at or below the horizon: whatever light there is, is diffuse.
            let ghi = WattsPerSquareMetre::saturating(ghi);
            return Self { ghi, dni: WattsPerSquareMetre::ZERO, dhi: ghi };
        }
        let kt = ghi / (e0 * cos_z);
        let dhi = ghi * erbs_diffuse_fraction(kt);
        let dni = ((ghi - dhi) / cos_z).clamp(0.0, e0);
        let w = WattsPerSquareMetre::saturating;
        Self { ghi: w(ghi), dni: w(dni), dhi: w(dhi) }
    }

    /// Clear-sky irradiance at `at` (Haurwitz GHI split with Erbs).
    #[must_use]
    pub fn clear_sky(at: Timestamp, latitude_deg: f64, longitude_deg: f64) -> Self {
        let pos = solar_position(at, latitude_deg, longitude_deg);
        Self::from_ghi(clear_sky_ghi(pos.zenith.get()), at, latitude_deg, longitude_deg)
    }
}

/// Plane-of-array irradiance, W/m², on a plane tilted by `tilt_deg` facing `azimuth_deg`, with
/// an isotropic sky and ground reflection `albedo`, for the sun at `sun`.
#[must_use]
pub fn plane_of_array(
    irr: Irradiance,
    sun: SolarPosition,
    tilt_deg: f64,
    azimuth_deg: f64,
    albedo: f64,
) -> f64 {
    let tilt = tilt_deg.to_radians();
    let zen = sun.zenith.get().to_radians();
    let cos_aoi = zen.cos() * tilt.cos()
        + zen.sin() * tilt.sin() * (sun.azimuth.get() - azimuth_deg).to_radians().cos();
    let beam = if zen.cos() > 0.0 { irr.dni.get() * cos_aoi.max(0.0) } else { 0.0 };
    let sky = irr.dhi.get() * (1.0 + tilt.cos()) / 2.0;
    let ground = irr.ghi.get() * albedo * (1.0 - tilt.cos()) / 2.0;
    (beam + sky + ground).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn wm2(v: f64) -> WattsPerSquareMetre {
        WattsPerSquareMetre::try_new(v).unwrap()
    }

    #[test]
    fn noon_at_equinox_and_solstice() {
        // Greensboro, 36.1 N 79.95 W; solar noon ≈ 17:20 UTC (+ equation of time).
        let p = solar_position(ts("2018-06-21T17:22:00Z"), 36.1, -79.95);
        assert!((p.zenith.get() - (36.1 - 23.44)).abs() < 0.6, "{p:?}");
        assert!((p.azimuth.get() - 180.0).abs() < 5.0, "{p:?}");
        let p = solar_position(ts("2018-03-20T17:27:00Z"), 36.1, -79.95);
        assert!((p.zenith.get() - 36.1).abs() < 0.7, "{p:?}");
        // Morning sun is in the east, evening sun in the west.
        assert!(solar_position(ts("2018-06-21T12:00:00Z"), 36.1, -79.95).azimuth.get() < 110.0);
        assert!(solar_position(ts("2018-06-21T22:00:00Z"), 36.1, -79.95).azimuth.get() > 250.0);
        // Midnight: below the horizon.
        assert!(solar_position(ts("2018-06-21T05:00:00Z"), 36.1, -79.95).zenith.get() > 90.0);
        // Berlin at winter solstice noon: 52.5 N, zenith ≈ 76°.
        let p = solar_position(ts("2018-12-21T11:05:00Z"), 52.5, 13.4);
        assert!((p.zenith.get() - (52.5 + 23.44)).abs() < 0.6, "{p:?}");
    }

    #[test]
    fn clear_sky_magnitudes() {
        assert_eq!(clear_sky_ghi(95.0), 0.0);
        let overhead = clear_sky_ghi(0.0);
        assert!((1030.0..1050.0).contains(&overhead), "{overhead}");
        let e0 = extraterrestrial_normal(ts("2018-01-03T12:00:00Z"));
        assert!((1400.0..1420.0).contains(&e0), "{e0}");
        let irr = Irradiance::clear_sky(ts("2018-06-21T17:22:00Z"), 36.1, -79.95);
        assert!(irr.ghi.get() > 900.0 && irr.dni.get() > 700.0 && irr.dhi.get() < 200.0, "{irr:?}");
    }

    #[test]
    fn transposition() {
        let sun = SolarPosition {
            zenith: Degrees::try_new(30.0).unwrap(),
            azimuth: Degrees::try_new(180.0).unwrap(),
        };
        let irr = Irradiance { ghi: wm2(800.0), dni: wm2(750.0), dhi: wm2(150.0) };
        // Horizontal plane receives GHI back (beam on horizontal + diffuse).
        let flat = plane_of_array(irr, sun, 0.0, 180.0, 0.2);
        assert!((flat - (750.0 * 30f64.to_radians().cos() + 150.0)).abs() < 1e-9);
        // A plane facing the sun gets the full beam.
        let facing = plane_of_array(irr, sun, 30.0, 180.0, 0.2);
        assert!(facing > 750.0 + 140.0, "{facing}");
        // A plane facing north at 90° gets no beam.
        let north = plane_of_array(irr, sun, 90.0, 0.0, 0.2);
        assert!(north < 200.0, "{north}");
    }
}
