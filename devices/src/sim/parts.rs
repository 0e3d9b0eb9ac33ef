//! Inverter, contactor, PV, load, grid meter and E-stop models.

use super::battery::SimBattery;
use super::{normal, StepCoeffs};
use crate::data::{DayType, LoadProfile, WeatherYear, HOURS_PER_YEAR};
use ems_core::snapshot::{ContactorState, EStopInput, InverterState};
use ems_core::{Celsius, Hertz, Millis, Percent, Volts, Watts};

/// Heat-sink thermal mass and conductance: 35 K rise at 200 W of losses, τ ≈ 9 min.
const INV_HEAT_CAPACITY: f64 = 3_000.0;
const INV_CONDUCTANCE: f64 = 200.0 / 35.0;
pub(crate) const INV_TAU_S: f64 = INV_HEAT_CAPACITY / INV_CONDUCTANCE;
/// Losses while synchronised but idle.
const INV_IDLE_LOSS_W: f64 = 15.0;

/// Battery inverter (PCS): follows the AC set-point within its rating and ramp rate.
#[derive(Debug, Clone)]
pub struct SimInverter {
    rating: f64,
    ramp_per_s: f64,
    efficiency: f64,
    pub(crate) faulted: bool,
    state: InverterState,
    ac: f64,
    dc: f64,
    temp: f64,
}

impl SimInverter {
    /// An inverter of `rating`, ramping at `ramp_per_s` watts per second, with one-way
    /// `efficiency`, heat-sink at `temp`.
    #[must_use]
    pub fn new(rating: Watts, ramp_per_s: Watts, efficiency: Percent, temp: Celsius) -> Self {
        Self {
            rating: f64::from(rating.get()),
            ramp_per_s: f64::from(ramp_per_s.get()),
            efficiency: f64::from(efficiency.fraction()),
            faulted: false,
            state: InverterState::Standby,
            ac: 0.0,
            dc: 0.0,
            temp: f64::from(temp.get()),
        }
    }

    /// Derating above 75 °C heat-sink, to zero at 95 °C.
    fn derate(&self) -> f64 {
        super::ramp_down(self.temp, 75.0, 95.0)
    }

    pub(crate) fn step(
        &mut self,
        setpoint: f64,
        dc_connected: bool,
        battery: &mut SimBattery,
        ambient: f64,
        k: &StepCoeffs,
    ) {
        self.state = if self.faulted {
            InverterState::Fault
        } else if dc_connected {
            InverterState::Running
        } else {
            InverterState::Standby
        };
        let running = matches!(self.state, InverterState::Running);
        let (ac, dc) = if running {
            let cap = self.rating * self.derate();
            let target = setpoint.clamp(-cap, cap);
            let max_step = self.ramp_per_s * k.dt_s;
            let ac_req = target.clamp(self.ac - max_step, self.ac + max_step);
            let dc_req = if ac_req >= 0.0 { ac_req / self.efficiency } else { ac_req * self.efficiency };
            let dc = battery.step(dc_req, ambient, k);
            let ac = if dc >= 0.0 { dc * self.efficiency } else { dc / self.efficiency };
            (ac, dc)
        } else {
            battery.step(0.0, ambient, k);
            (0.0, 0.0)
        };
        self.ac = ac;
        self.dc = dc;
        let loss = (dc - ac).abs() + if running { INV_IDLE_LOSS_W } else { 0.0 };
        let target = ambient + loss / INV_CONDUCTANCE;
        self.temp = target + (self.temp - target) * k.inverter_decay;
    }

    /// AC active power, `+` discharge / `−` charge.
    #[must_use]
    pub fn power(&self) -> Watts {
        Watts::new(self.ac as f32)
    }

    /// DC power drawn from (`+`) or pushed into (`−`) the battery.
    #[must_use]
    pub fn dc_power(&self) -> Watts {
        Watts::new(self.dc as f32)
    }

    /// Operating state.
    #[must_use]
    pub fn state(&self) -> InverterState {
        self.state
    }

    /// Heat-sink temperature.
    #[must_use]
    pub fn temperature(&self) -> Celsius {
        Celsius::new(self.temp as f32)
    }

    /// Nameplate rating.
    #[must_use]
    pub fn rating(&self) -> Watts {
        Watts::new(self.rating as f32)
    }
}

/// Pre-charge time of the contactor sequence.
pub const PRECHARGE_TIME: Millis = Millis::new(300);

/// Main DC contactor with pre-charge: `Open` →(close) `Precharging` 300 ms → `Closed`; an open
/// command opens at once.
#[derive(Debug, Clone, Default)]
pub struct SimContactor {
    closed: bool,
    precharging_for: Option<u64>,
}

impl SimContactor {
    /// Apply the command at the start of a sub-step (open is immediate).
    pub(crate) fn command(&mut self, close: Option<bool>) {
        match close {
            Some(false) => {
                self.closed = false;
                self.precharging_for = None;
            }
            Some(true) if !self.closed && self.precharging_for.is_none() => self.precharging_for = Some(0),
            Some(true) | None => {}
        }
    }

    /// Let the pre-charge timer run for `dt`.
    pub(crate) fn step(&mut self, dt_ms: u64) {
        if let Some(t) = self.precharging_for {
            let t = t.saturating_add(dt_ms);
            if t >= PRECHARGE_TIME.get() {
                self.closed = true;
                self.precharging_for = None;
            } else {
                self.precharging_for = Some(t);
            }
        }
    }

    /// Feedback state.
    #[must_use]
    pub fn state(&self) -> ContactorState {
        if self.closed {
            ContactorState::Closed
        } else if self.precharging_for.is_some() {
            ContactorState::Precharging
        } else {
            ContactorState::Open
        }
    }

    /// Pre-charge completed (true while closed).
    #[must_use]
    pub fn precharge_done(&self) -> bool {
        self.closed
    }
}

/// PV array driven by the TMY3 irradiance and air temperature.
#[derive(Debug, Clone)]
pub struct SimPv {
    peak: f64,
    system_efficiency: f64,
    weather: &'static WeatherYear,
    power: f64,
    air_temp: f64,
}

impl SimPv {
    /// An array of `peak` (at 1000 W/m², 25 °C) with `system_efficiency` (wiring, inverter,
    /// soiling).
    #[must_use]
    pub fn new(peak: Watts, system_efficiency: Percent, weather: &'static WeatherYear) -> Self {
        Self {
            peak: f64::from(peak.get()),
            system_efficiency: f64::from(system_efficiency.fraction()),
            weather,
            power: 0.0,
            air_temp: 0.0,
        }
    }

    /// Update for `hour_of_year` (fractional hours since 1 January 00:00). Hourly values are
    /// means over the hour ending at their stamp, so they are placed at mid-hour and
    /// interpolated linearly between mid-hours (wrapping at the year end).
    pub(crate) fn step(&mut self, hour_of_year: f64) {
        let hours = HOURS_PER_YEAR as f64;
        let x = (hour_of_year - 0.5).rem_euclid(hours);
        // x is in 0..8760.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (x as usize).min(HOURS_PER_YEAR - 1);
        let j = if i + 1 == HOURS_PER_YEAR { 0 } else { i + 1 };
        let f = x - i as f64;
        let ghi_t = self.weather.raw_ghi();
        let air_t = self.weather.raw_dry_bulb();
        let (g0, g1) = (f64::from(ghi_t[i]), f64::from(ghi_t[j]));
        let (t0, t1) = (f64::from(air_t[i]), f64::from(air_t[j]));
        let ghi = g0 + f * (g1 - g0);
        self.air_temp = t0 + f * (t1 - t0);
        // Cell temperature rises ~25 K above air at 800 W/m² (NOCT-style estimate).
        let t_cell = self.air_temp + ghi * (25.0 / 800.0);
        let p = ghi / 1000.0 * self.peak * (1.0 - 0.004 * (t_cell - 25.0)) * self.system_efficiency;
        self.power = p.max(0.0);
    }

    /// AC production (≥ 0).
    #[must_use]
    pub fn power(&self) -> Watts {
        Watts::new(self.power as f32)
    }

    /// Outdoor air temperature at the current time (TMY3 dry-bulb, interpolated).
    #[must_use]
    pub fn air_temperature(&self) -> Celsius {
        Celsius::new(self.air_temp as f32)
    }
}

/// Household load from the BDEW H25 profile, dynamised, with AR(1) multiplicative noise.
#[derive(Debug, Clone)]
pub struct SimLoad {
    scale: f64,
    profile: &'static LoadProfile,
    noise: f64,
    noise_std: f64,
    cached_day: u64,
    column: usize,
    day_factor: f64,
    power: f64,
}

/// BDEW dynamisation factor for day of year `t` (1-based).
#[must_use]
pub fn dynamisation(day_of_year: u16) -> f64 {
    let t = f64::from(day_of_year);
    -3.92e-10 * t.powi(4) + 3.2e-7 * t.powi(3) - 7.02e-5 * t * t + 2.1e-3 * t + 1.24
}

impl SimLoad {
    /// A household consuming about `annual` (Wh) per year, with `noise_std` multiplicative
    /// noise (standard deviation).
    #[must_use]
    pub fn new(annual: ems_core::WattHours, noise_std: Percent, profile: &'static LoadProfile) -> Self {
        Self {
            // raw kWh per 15 min at 1e6 kWh/a → W: × annual_kWh / 1e6 × 4 × 1000.
            scale: f64::from(annual.get()) / 1000.0 / 1.0e6 * 4.0 * 1000.0,
            profile,
            noise: 0.0,
            noise_std: f64::from(noise_std.fraction()),
            cached_day: u64::MAX,
            column: 0,
            day_factor: 1.0,
            power: 0.0,
        }
    }

    /// Mean (noise-free) power for a calendar instant.
    #[must_use]
    pub fn profile_power(&self, cal: &super::Calendar) -> Watts {
        let col = LoadProfile::column(cal.month, cal.day_type());
        let q = quarter_of(cal.time_of_day.get());
        Watts::new((f64::from(self.profile.raw(q, col)) * self.scale * dynamisation(cal.day_of_year)) as f32)
    }

    pub(crate) fn step(
        &mut self,
        cal: &super::Calendar,
        day_index: u64,
        rng: &mut fastrand::Rng,
        k: &StepCoeffs,
    ) {
        if day_index != self.cached_day {
            self.cached_day = day_index;
            self.column = LoadProfile::column(cal.month, cal.day_type());
            self.day_factor = dynamisation(cal.day_of_year);
        }
        let q = quarter_of(cal.time_of_day.get());
        self.noise = k.noise_phi * self.noise + k.noise_innovation * normal(rng);
        let base = f64::from(self.profile.raw(q, self.column)) * self.scale * self.day_factor;
        self.power = (base * (1.0 + self.noise_std * self.noise)).max(0.0);
    }

    /// Current consumption (≥ 0).
    #[must_use]
    pub fn power(&self) -> Watts {
        Watts::new(self.power as f32)
    }
}

fn quarter_of(ms_of_day: u64) -> usize {
    // < 96 for any time of day; usize holds it on every target.
    usize::try_from(ms_of_day / 900_000).unwrap_or(0).min(95)
}

/// Grid meter at the connection point: `grid = load − pv − battery` (`+` import), with 230 V and
/// 50 Hz plus optional small mean-reverting noise.
#[derive(Debug, Clone)]
pub struct SimGridMeter {
    power: f64,
    noise: bool,
    v_noise: f64,
    f_noise: f64,
}

impl SimGridMeter {
    /// A meter; `noise` adds about ±1 V and ±15 mHz (1 σ) of slow variation.
    #[must_use]
    pub fn new(noise: bool) -> Self {
        Self { power: 0.0, noise, v_noise: 0.0, f_noise: 0.0 }
    }

    pub(crate) fn step(&mut self, load: f64, pv: f64, battery: f64, rng: &mut fastrand::Rng, k: &StepCoeffs) {
        self.power = load - pv - battery;
        if self.noise {
            self.v_noise = k.grid_phi * self.v_noise + k.grid_innovation * normal(rng);
            self.f_noise = k.grid_phi * self.f_noise + k.grid_innovation * normal(rng);
        }
    }

    /// Active power, `+` import / `−` export.
    #[must_use]
    pub fn power(&self) -> Watts {
        Watts::new(self.power as f32)
    }

    /// Voltage.
    #[must_use]
    pub fn voltage(&self) -> Volts {
        Volts::new((230.0 + self.v_noise) as f32)
    }

    /// Frequency.
    #[must_use]
    pub fn frequency(&self) -> Hertz {
        Hertz::new((50.0 + 0.015 * self.f_noise) as f32)
    }
}

/// The E-stop input: tests press and release it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimEStop {
    pressed: bool,
}

impl SimEStop {
    /// Press the button (open the loop).
    pub fn press(&mut self) {
        self.pressed = true;
    }

    /// Release it.
    pub fn release(&mut self) {
        self.pressed = false;
    }

    /// The input as read.
    #[must_use]
    pub fn state(&self) -> EStopInput {
        if self.pressed {
            EStopInput::Pressed
        } else {
            EStopInput::Released
        }
    }
}

impl super::Calendar {
    /// BDEW day type of this day (no public holidays).
    #[must_use]
    pub fn day_type(&self) -> DayType {
        match self.weekday {
            5 => DayType::Saturday,
            6 => DayType::Sunday,
            _ => DayType::Workday,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contactor_precharges_then_closes_and_opens_at_once() {
        let mut c = SimContactor::default();
        assert_eq!(c.state(), ContactorState::Open);
        c.command(Some(true));
        assert_eq!(c.state(), ContactorState::Precharging);
        c.step(100);
        c.command(Some(true));
        c.step(100);
        assert_eq!(c.state(), ContactorState::Precharging);
        assert!(!c.precharge_done());
        c.step(100);
        assert_eq!(c.state(), ContactorState::Closed);
        assert!(c.precharge_done());
        c.command(None);
        assert_eq!(c.state(), ContactorState::Closed);
        c.command(Some(false));
        assert_eq!(c.state(), ContactorState::Open);
        assert!(!c.precharge_done());
    }

    #[test]
    fn dynamisation_is_winter_high_summer_low() {
        assert!((dynamisation(1) - 1.24).abs() < 0.01);
        assert!(dynamisation(180) < 0.85);
    }
}
