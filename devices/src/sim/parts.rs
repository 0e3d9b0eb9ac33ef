//! Inverter, DC power path (pre-charge and main relays, DC link), PV, load, grid meter and
//! E-stop models.

pub use super::physics::{DC_LINK_BLEED_TAU, PRECHARGE_TAU};

use super::battery::SimBattery;
use super::calendar::Calendar;
use super::physics::{normal, ramp_down, StepCoeffs, INV_CONDUCTANCE};
use crate::data::{DayType, LoadProfile, WeatherYear, HOURS_PER_YEAR};
use crate::traits::{ControlSource, InverterSettings};
use ems_core::snapshot::{ContactorState, EStopInput, InverterState};
use ems_core::{Celsius, Hertz, Millis, Percent, Volts, Watts};

/// Losses while synchronised but idle.
const INV_IDLE_LOSS_W: f64 = 15.0;

/// Depth of the queue of set-points waiting under [`SimFault::InverterDelay`](super::SimFault).
/// When it is full the oldest waiting write takes effect at once.
pub const DELAY_QUEUE: usize = 32;

/// Battery inverter (PCS): follows the applied set-point within its rating and ramp rate.
///
/// Control logic as in a real PCS: it starts under [`ControlSource::Local`] (0 W, its safe
/// default); the EMS takes control with a settings write, after which written set-points are
/// applied. The device's own revert timer falls back to `Local` with a zero set-point when no
/// write arrived for the armed timeout.
#[derive(Debug, Clone)]
pub struct InverterModel {
    rating: f64,
    ramp_per_s: f64,
    efficiency: f64,
    pub(crate) faulted: bool,
    pub(crate) ignores_setpoint: bool,
    pub(crate) delay_ms: u64,
    state: InverterState,
    ac: f64,
    dc: f64,
    temp: f64,
    control: ControlSource,
    register: f64,
    pending: heapless::Deque<(f64, u64), DELAY_QUEUE>,
    revert_timeout: Option<u64>,
    last_write_ms: u64,
}

impl InverterModel {
    /// An inverter of `rating`, ramping at `ramp_per_s` watts per second, with one-way
    /// `efficiency`, heat-sink at `temp`; under local control with a zero set-point.
    #[must_use]
    pub fn new(rating: Watts, ramp_per_s: Watts, efficiency: Percent, temp: Celsius) -> Self {
        Self {
            rating: f64::from(rating.get()),
            ramp_per_s: f64::from(ramp_per_s.get()),
            efficiency: f64::from(efficiency.fraction()),
            faulted: false,
            ignores_setpoint: false,
            delay_ms: 0,
            state: InverterState::Standby,
            ac: 0.0,
            dc: 0.0,
            temp: f64::from(temp.get()),
            control: ControlSource::Local,
            register: 0.0,
            pending: heapless::Deque::new(),
            revert_timeout: None,
            last_write_ms: 0,
        }
    }

    /// Derating above 75 °C heat-sink, to zero at 95 °C.
    fn derate(&self) -> f64 {
        ramp_down(self.temp, 75.0, 95.0)
    }

    /// The set-point the device applies: its register under remote control, 0 W under local.
    pub(crate) fn applied_setpoint(&self) -> f64 {
        match self.control {
            ControlSource::Remote => self.register,
            ControlSource::Local => 0.0,
        }
    }

    /// A set-point write reaching the device at `now_ms` (range and state already checked).
    /// It restarts the revert timer; the value goes through the injected faults.
    pub(crate) fn write(&mut self, value: f64, now_ms: u64) {
        self.last_write_ms = now_ms;
        if self.ignores_setpoint {
            return;
        }
        if self.delay_ms == 0 {
            self.register = value;
            return;
        }
        // Repeating the newest waiting value changes nothing (a cyclic writer would otherwise
        // fill the queue with copies).
        if self.pending.back().is_some_and(|p| p.0 == value) {
            return;
        }
        if self.pending.is_full() {
            if let Some((v, _)) = self.pending.pop_front() {
                self.register = v;
            }
        }
        // Cannot fail: one slot was freed above if the queue was full.
        let _ = self.pending.push_back((value, now_ms.saturating_add(self.delay_ms)));
    }

    /// A settings write at `now_ms` (values already checked).
    pub(crate) fn write_settings(&mut self, settings: &InverterSettings, now_ms: u64) {
        self.control = settings.control;
        self.revert_timeout = settings.revert_timeout.map(Millis::get);
        self.write(f64::from(settings.setpoint.get()), now_ms);
    }

    /// The settings as the device reports them (the stored register, not the applied value).
    pub(crate) fn settings(&self) -> InverterSettings {
        InverterSettings {
            control: self.control,
            setpoint: Watts::saturating(crate::narrow::f32_of(self.register)),
            revert_timeout: self.revert_timeout.map(Millis::new),
        }
    }

    /// Take remote control without a revert timer (the ideal device layer of
    /// `SimulatedSite::apply`).
    pub(crate) fn take_control(&mut self) {
        self.control = ControlSource::Remote;
    }

    /// Who controls the set-point.
    #[must_use]
    pub fn control(&self) -> ControlSource {
        self.control
    }

    /// The next simulated instant (ms since start) at which the device changes by itself: a
    /// delayed set-point taking effect or the revert timer expiring.
    pub(crate) fn next_event(&self) -> Option<u64> {
        let due = self.pending.front().map(|p| p.1);
        let revert = match (self.control, self.revert_timeout) {
            (ControlSource::Remote, Some(t)) => Some(self.last_write_ms.saturating_add(t)),
            (ControlSource::Remote | ControlSource::Local, _) => None,
        };
        match (due, revert) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Let the device's own timers run up to `now_ms`.
    pub(crate) fn tick(&mut self, now_ms: u64) {
        while let Some(&(v, due)) = self.pending.front() {
            if due > now_ms {
                break;
            }
            self.register = v;
            self.pending.pop_front();
        }
        if let (ControlSource::Remote, Some(t)) = (self.control, self.revert_timeout) {
            if now_ms.saturating_sub(self.last_write_ms) >= t {
                self.control = ControlSource::Local;
                self.register = 0.0;
                self.pending.clear();
            }
        }
    }

    /// Forget waiting delayed writes (the delay fault was cleared).
    pub(crate) fn clear_delay(&mut self) {
        self.delay_ms = 0;
        while let Some((v, _)) = self.pending.pop_front() {
            self.register = v;
        }
    }

    pub(crate) fn step(
        &mut self,
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
            let target = self.applied_setpoint().clamp(-cap, cap);
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
        Watts::saturating(crate::narrow::f32_of(self.ac))
    }

    /// DC power drawn from (`+`) or pushed into (`−`) the battery.
    #[must_use]
    pub fn dc_power(&self) -> Watts {
        Watts::saturating(crate::narrow::f32_of(self.dc))
    }

    /// The set-point the device applies now (0 W under local control).
    #[must_use]
    pub fn setpoint(&self) -> Watts {
        Watts::saturating(crate::narrow::f32_of(self.applied_setpoint()))
    }

    /// Operating state.
    #[must_use]
    pub fn state(&self) -> InverterState {
        self.state
    }

    /// Heat-sink temperature.
    #[must_use]
    pub fn temperature(&self) -> Celsius {
        Celsius::saturating(crate::narrow::f32_of(self.temp))
    }

    /// Nameplate rating.
    #[must_use]
    pub fn rating(&self) -> Watts {
        Watts::saturating(crate::narrow::f32_of(self.rating))
    }
}

/// Closing the main relay with the DC link further than this fraction of the pack voltage
/// away is an inrush event.
pub const INRUSH_THRESHOLD: f64 = 0.10;
/// The DC link counts as pre-charged within this fraction of the pack voltage.
pub const PRECHARGED_WITHIN: f64 = 0.05;

/// The DC power path between pack and inverter: a pre-charge relay (through a resistor) and a
/// main relay, each with a coil and an auxiliary feedback contact, and the DC-link voltage.
///
/// Contacts follow their coils at the start of the next sub-step unless a fault holds them.
#[derive(Debug, Clone, Default)]
pub struct PowerPath {
    pub(crate) precharge_coil: bool,
    pub(crate) main_coil: bool,
    precharge_closed: bool,
    main_closed: bool,
    dc_link: f64,
    pack: f64,
    pub(crate) welded: bool,
    pub(crate) stuck_open: bool,
    pub(crate) resistor_open: bool,
    inrush_events: u32,
}

impl PowerPath {
    /// Both relays open, DC link discharged, pack at `pack_voltage`.
    #[must_use]
    pub fn new(pack_voltage: Volts) -> Self {
        Self { pack: f64::from(pack_voltage.get()), ..Self::default() }
    }

    /// Move the contacts to their coils (start of a sub-step); count an inrush if the main
    /// contact closes onto a DC link that is not pre-charged.
    pub(crate) fn update_contacts(&mut self, pack_voltage: f64) {
        self.pack = pack_voltage;
        self.precharge_closed = self.precharge_coil;
        // A welded contact stays closed whatever the coil; a contact stuck open fails to close,
        // but does not open one that is already closed.
        let main =
            if self.main_closed { self.main_coil || self.welded } else { self.main_coil && !self.stuck_open };
        if main && !self.main_closed {
            if (self.pack - self.dc_link).abs() > INRUSH_THRESHOLD * self.pack {
                self.inrush_events = self.inrush_events.saturating_add(1);
            }
            self.dc_link = self.pack;
        }
        self.main_closed = main;
    }

    /// Let the DC link follow its circuit over one sub-step (end of the sub-step).
    pub(crate) fn step(&mut self, pack_voltage: f64, k: &StepCoeffs) {
        self.pack = pack_voltage;
        self.dc_link = if self.main_closed {
            self.pack
        } else if self.precharge_closed && !self.resistor_open {
            self.pack + (self.dc_link - self.pack) * k.precharge_decay
        } else {
            self.dc_link * k.bleed_decay
        };
    }

    /// Whether the main contact is closed (power can flow).
    #[must_use]
    pub fn connected(&self) -> bool {
        self.main_closed
    }

    /// Feedback contact of the pre-charge relay.
    #[must_use]
    pub fn precharge_closed(&self) -> bool {
        self.precharge_closed
    }

    /// Feedback contact of the main relay.
    #[must_use]
    pub fn main_closed(&self) -> bool {
        self.main_closed
    }

    /// DC-link voltage.
    #[must_use]
    pub fn dc_link_voltage(&self) -> Volts {
        Volts::saturating(crate::narrow::f32_of(self.dc_link))
    }

    /// The DC link is within 5 % of the pack voltage.
    #[must_use]
    pub fn precharge_done(&self) -> bool {
        (self.pack - self.dc_link).abs() <= PRECHARGED_WITHIN * self.pack
    }

    /// Contactor state from the feedback contacts: `Closed` with the main contact closed,
    /// `Precharging` with only the pre-charge contact closed, else `Open`.
    #[must_use]
    pub fn state(&self) -> ContactorState {
        if self.main_closed {
            ContactorState::Closed
        } else if self.precharge_closed {
            ContactorState::Precharging
        } else {
            ContactorState::Open
        }
    }

    /// Main-relay closings onto a DC link more than 10 % away from the pack voltage.
    #[must_use]
    pub fn inrush_events(&self) -> u32 {
        self.inrush_events
    }

    /// The ideal pre-charge sequence: set the coils for a close (`true`) or open (`false`)
    /// request from the contact states and the DC link.
    pub(crate) fn sequence(&mut self, close: bool) {
        if !close {
            self.precharge_coil = false;
            self.main_coil = false;
        } else if self.main_closed || self.precharge_done() {
            self.main_coil = true;
            self.precharge_coil = false;
        } else {
            self.precharge_coil = true;
            self.main_coil = false;
        }
    }
}

/// PV array driven by the TMY3 irradiance and air temperature.
#[derive(Debug, Clone)]
pub struct PvArray {
    peak: f64,
    system_efficiency: f64,
    weather: &'static WeatherYear,
    power: f64,
    air_temp: f64,
}

impl PvArray {
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
        let hours = crate::narrow::f64_of_usize(HOURS_PER_YEAR);
        let x = (hour_of_year - 0.5).rem_euclid(hours);
        // x is in 0..8760.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (x as usize).min(HOURS_PER_YEAR - 1);
        let j = if i + 1 == HOURS_PER_YEAR { 0 } else { i + 1 };
        let f = x - crate::narrow::f64_of_usize(i);
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
        Watts::saturating(crate::narrow::f32_of(self.power))
    }

    /// Outdoor air temperature at the current time (TMY3 dry-bulb, interpolated).
    #[must_use]
    pub fn air_temperature(&self) -> Celsius {
        Celsius::saturating(crate::narrow::f32_of(self.air_temp))
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
    pub fn profile_power(&self, cal: &Calendar) -> Watts {
        let col = LoadProfile::column(cal.month, cal.day_type());
        let q = quarter_of(cal.time_of_day.get());
        Watts::saturating(crate::narrow::f32_of(
            f64::from(self.profile.raw(q, col)) * self.scale * dynamisation(cal.day_of_year),
        ))
    }

    pub(crate) fn step(&mut self, cal: &Calendar, day_index: u64, rng: &mut fastrand::Rng, k: &StepCoeffs) {
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
        Watts::saturating(crate::narrow::f32_of(self.power))
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
        Watts::saturating(crate::narrow::f32_of(self.power))
    }

    /// Voltage.
    #[must_use]
    pub fn voltage(&self) -> Volts {
        Volts::saturating(crate::narrow::f32_of(230.0 + self.v_noise))
    }

    /// Frequency.
    #[must_use]
    pub fn frequency(&self) -> Hertz {
        Hertz::saturating(crate::narrow::f32_of(50.0 + 0.015 * self.f_noise))
    }
}

/// The E-stop button on a normally-closed loop: tests press and release it.
#[derive(Debug, Clone, Copy, Default)]
pub struct EStopButton {
    pressed: bool,
}

impl EStopButton {
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

impl Calendar {
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

    fn k(ms: u64) -> StepCoeffs {
        StepCoeffs::new(Millis::new(ms))
    }

    #[test]
    fn dc_link_precharges_closes_and_bleeds() {
        let mut p = PowerPath::new(ems_core::volts!(52.0));
        assert_eq!(p.state(), ContactorState::Open);
        p.precharge_coil = true;
        assert_eq!(p.state(), ContactorState::Open, "contacts move at the next sub-step");
        for _ in 0..5 {
            p.update_contacts(52.0);
            p.step(52.0, &k(100));
        }
        assert_eq!(p.state(), ContactorState::Precharging);
        let v = p.dc_link_voltage().get();
        assert!((0.95 * 52.0..52.0).contains(&v), "{v}");
        assert!(p.precharge_done());
        p.main_coil = true;
        p.precharge_coil = false;
        p.update_contacts(52.0);
        assert_eq!(p.state(), ContactorState::Closed);
        assert_eq!(p.inrush_events(), 0);
        p.main_coil = false;
        p.update_contacts(52.0);
        p.step(52.0, &k(1000));
        let v = p.dc_link_voltage().get();
        assert!((v / 52.0 - (-0.5_f32).exp()).abs() < 1e-3, "τ = 2 s: {v}");
        p.main_coil = true;
        p.update_contacts(52.0);
        assert_eq!(p.inrush_events(), 1);
    }

    #[test]
    fn welded_and_stuck_contacts() {
        let mut p = PowerPath::new(ems_core::volts!(52.0));
        p.stuck_open = true;
        p.main_coil = true;
        p.update_contacts(52.0);
        assert!(!p.main_closed());
        p.stuck_open = false;
        p.update_contacts(52.0);
        assert!(p.main_closed());
        p.welded = true;
        p.main_coil = false;
        p.update_contacts(52.0);
        assert!(p.main_closed(), "a welded contact stays closed");
    }

    #[test]
    fn dynamisation_is_winter_high_summer_low() {
        assert!((dynamisation(1) - 1.24).abs() < 0.01);
        assert!(dynamisation(180) < 0.85);
    }
}
