//! Simulated devices with physics, composed into a [`SimulatedSite`].
//!
//! The physics are stepped through [`SimulatedSite`]; the device layer reaches them through
//! [`SharedSite::devices`], one handle per device ([`SimBms`], [`SimInverter`], [`SimMeter`],
//! [`SimPv`], two [`SimRelay`]s and the [`SimEStopPin`]), each implementing its trait from
//! [`crate::traits`] (the E-stop pin implements `embedded_hal::digital::InputPin`).
//!
//! The models are deliberately simple but physically consistent (energy balance holds every
//! step, the battery cannot leave 0..=100 % SOC) and cheap: one `advance(1 s)` plus
//! `fill_snapshot` costs well under a microsecond, with no allocation. See `devices/README.md`
//! for the equations and parameters.

pub mod battery;
mod handles;
pub mod parts;
mod site;

pub use battery::{
    ocv_cell, SimBattery, SimChemistry, SimPack, CELLS_IN_SERIES, CELL_NOMINAL_VOLTAGE, NMC_OCV_KNOTS,
    OCV_KNOTS,
};
pub use handles::{
    RelayRole, SharedSite, SimBms, SimDeviceError, SimDevices, SimEStopPin, SimInverter, SimMeter, SimPv,
    SimRelay,
};
pub use parts::{
    dynamisation, EStopButton, InverterModel, PowerPath, PvArray, SimGridMeter, SimLoad, DC_LINK_BLEED_TAU,
    DELAY_QUEUE, INRUSH_THRESHOLD, PRECHARGED_WITHIN, PRECHARGE_TAU,
};
pub use site::{Ambient, EnergyCounters, SimError, SimFault, SimSiteConfig, SimulatedSite, SiteTruth};

use ems_core::Millis;

/// Time constant of the load noise (AR(1) correlation time).
const LOAD_NOISE_TAU_S: f64 = 300.0;
/// Time constant of the grid voltage/frequency noise.
const GRID_NOISE_TAU_S: f64 = 60.0;

/// Everything that depends only on the step length, computed once per distinct `dt` so the hot
/// path has no `exp()`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepCoeffs {
    pub(crate) dt_ms: u64,
    pub(crate) dt_s: f64,
    pub(crate) dt_h: f64,
    pub(crate) battery_decay: f64,
    pub(crate) inverter_decay: f64,
    pub(crate) precharge_decay: f64,
    pub(crate) bleed_decay: f64,
    pub(crate) noise_phi: f64,
    pub(crate) noise_innovation: f64,
    pub(crate) grid_phi: f64,
    pub(crate) grid_innovation: f64,
}

impl StepCoeffs {
    pub(crate) fn new(dt: Millis) -> Self {
        let dt_s = f64::from(u32::try_from(dt.get()).unwrap_or(u32::MAX)) / 1000.0;
        let noise_phi = (-dt_s / LOAD_NOISE_TAU_S).exp();
        let grid_phi = (-dt_s / GRID_NOISE_TAU_S).exp();
        Self {
            dt_ms: dt.get(),
            dt_s,
            dt_h: dt_s / 3600.0,
            battery_decay: (-dt_s / battery::THERMAL_TAU_S).exp(),
            inverter_decay: (-dt_s / parts::INV_TAU_S).exp(),
            precharge_decay: (-dt_s / ms_to_s(parts::PRECHARGE_TAU)).exp(),
            bleed_decay: (-dt_s / ms_to_s(parts::DC_LINK_BLEED_TAU)).exp(),
            noise_phi,
            noise_innovation: (1.0 - noise_phi * noise_phi).sqrt(),
            grid_phi,
            grid_innovation: (1.0 - grid_phi * grid_phi).sqrt(),
        }
    }
}

fn ms_to_s(t: Millis) -> f64 {
    f64::from(u32::try_from(t.get()).unwrap_or(u32::MAX)) / 1000.0
}

/// An approximately standard-normal sample (Irwin–Hall sum of four uniforms, rescaled): cheap
/// and deterministic per seed; the tails are bounded at ±3.46 σ, which suits noise on a load.
pub(crate) fn normal(rng: &mut fastrand::Rng) -> f64 {
    let s = rng.f32() + rng.f32() + rng.f32() + rng.f32();
    f64::from(s - 2.0) * 3.0_f64.sqrt()
}

/// 0 at or below `lo`, 1 at or above `hi`, linear in between.
pub(crate) fn ramp_up(x: f64, lo: f64, hi: f64) -> f64 {
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// 1 at or below `lo`, 0 at or above `hi`, linear in between.
pub(crate) fn ramp_down(x: f64, lo: f64, hi: f64) -> f64 {
    1.0 - ramp_up(x, lo, hi)
}

/// Where the simulated clock stands in its (non-leap, local standard time) year. Weekdays are
/// those of 2025 (1 January a Wednesday) and continue across year ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// Day of the year, 1..=365.
    pub day_of_year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=31.
    pub day_of_month: u8,
    /// Weekday, 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// Time since local midnight.
    pub time_of_day: Millis,
}

/// Milliseconds per day.
pub const DAY_MS: u64 = 86_400_000;
/// Days in the simulation year.
pub const YEAR_DAYS: u64 = 365;

impl Calendar {
    /// The calendar for `clock` milliseconds after 1 January 00:00 of the first simulated year.
    #[must_use]
    pub fn at(clock: Millis) -> Self {
        let day_total = clock.get() / DAY_MS;
        let mut cal = Self::for_day(day_total);
        cal.time_of_day = Millis::new(clock.get() % DAY_MS);
        cal
    }

    pub(crate) fn for_day(day_total: u64) -> Self {
        // Both remainders are < 365 and < 7, so they fit the narrow types.
        let doy0 = u16::try_from(day_total % YEAR_DAYS).unwrap_or(0);
        let weekday = u8::try_from((day_total + 2) % 7).unwrap_or(0);
        let m0 = crate::data::MONTH_START_DAY[..12].iter().rposition(|&d| d <= doy0).unwrap_or(0);
        let day_of_month = u8::try_from(doy0 - crate::data::MONTH_START_DAY[m0] + 1).unwrap_or(1);
        Self {
            day_of_year: doy0 + 1,
            month: u8::try_from(m0 + 1).unwrap_or(1),
            day_of_month,
            weekday,
            time_of_day: Millis::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_of_2025() {
        let c = Calendar::at(Millis::ZERO);
        assert_eq!((c.day_of_year, c.month, c.day_of_month, c.weekday), (1, 1, 1, 2));
        let june1 = Calendar::at(Millis::new(151 * DAY_MS + 3_600_000));
        assert_eq!((june1.month, june1.day_of_month, june1.weekday), (6, 1, 6)); // a Sunday
        assert_eq!(june1.time_of_day, Millis::new(3_600_000));
        let dec31 = Calendar::at(Millis::new(364 * DAY_MS));
        assert_eq!((dec31.month, dec31.day_of_month), (12, 31));
        let next = Calendar::at(Millis::new(365 * DAY_MS));
        assert_eq!((next.day_of_year, next.weekday), (1, 3)); // 2026-01-01 is a Thursday
    }
}
