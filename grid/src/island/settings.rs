//! The island settings: interface-protection stages, the RoCoF window, the enter-service
//! window, the synchro-check and the sequence's timings — every number with its source or
//! marked **Assumption** (a leaf module: it uses no other module of `island`).
//!
//! Sources (defaults, to be replaced by the settings the DSO prescribes for the site):
//!
//! * **VDE-AR-N 4105:2018-11 §6.5.3 / Table 3** (central NA protection, LV): U< 0.80 Un 3.0 s,
//!   U<< 0.45 Un 0.3 s, U>> 1.25 Un 0.1 s, U> 1.10 Un as a 10-min moving mean, f< 47.5 Hz 0.1 s,
//!   f> 51.5 Hz 0.1 s. EN 50549-1:2019 §4.9.3 gives the same stages with adjustable ranges; the
//!   values above lie inside them.
//! * **EN 50549-1:2019 §4.10** (connection and starting to generate, automatic reconnection after
//!   a trip): frequency 49.9–50.1 Hz and voltage 0.85–1.10 Un continuously for 60 s, then the
//!   active power rises at ≤ 10 % Pn/min.
//! * **IEEE 1547-2018 Table 5** (synchronisation, aggregate rating ≤ 500 kVA): Δf ≤ 0.3 Hz,
//!   ΔV ≤ 10 %, Δφ ≤ 20°.
//! * **RoCoF**: EN 50549-1:2019 §4.5.3 requires immunity up to 2 Hz/s over a 500 ms window;
//!   **Assumption:** the supervisory loss-of-mains stage trips only *above* that immunity
//!   (|df/dt| > 2.0 Hz/s over 500 ms) so it never separates the site for a disturbance the
//!   grid code requires it to ride through.
//! * Every sequence timing (`SequenceSettings`) is an **Assumption** (breaker operating times
//!   are 50–100 ms; the verification timeouts leave a wide margin).

use core::fmt;
use ems_core::{Hertz, Millis, Percent, Volts, Watts};

/// An angle in degrees, `-180 ..= 180` (a phase difference across the breaker).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Degrees(f32);

impl Degrees {
    /// Zero degrees.
    pub const ZERO: Self = Self(0.0);

    /// An angle; refused when not finite. Any finite angle is wrapped into `-180 ..= 180`.
    ///
    /// # Errors
    /// [`SettingsError`] naming `"angle"` and the value when it is NaN or infinite.
    pub fn try_new(deg: f32) -> Result<Self, SettingsError> {
        if !deg.is_finite() {
            return Err(SettingsError::new("angle", SettingValue::Degrees(Self(0.0)), "must be finite"));
        }
        Ok(Self(wrap(deg)))
    }

    /// An angle from a literal: wrapped into `-180 ..= 180`; a non-finite value gives zero.
    #[must_use]
    pub fn literal(deg: f32) -> Self {
        if deg.is_finite() {
            Self(wrap(deg))
        } else {
            Self(0.0)
        }
    }

    /// The angle in degrees.
    #[must_use]
    pub const fn get(self) -> f32 {
        self.0
    }

    /// The magnitude.
    #[must_use]
    pub fn abs(self) -> Self {
        Self(if self.0 < 0.0 { -self.0 } else { self.0 })
    }
}

/// `deg` wrapped into `-180 ..= 180` (finite input).
fn wrap(deg: f32) -> f32 {
    let mut d = deg % 360.0;
    if d > 180.0 {
        d -= 360.0;
    } else if d < -180.0 {
        d += 360.0;
    }
    d
}

impl fmt::Display for Degrees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}°", self.0)
    }
}

/// A refused setting value, in its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SettingValue {
    /// A voltage.
    Volts(Volts),
    /// A frequency (or a frequency difference / rate in Hz/s).
    Hertz(Hertz),
    /// A duration.
    Millis(Millis),
    /// A percentage.
    Percent(Percent),
    /// A power.
    Watts(Watts),
    /// An angle.
    Degrees(Degrees),
    /// A count (loads, priorities).
    Count(usize),
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Volts(v) => write!(f, "{v:.1}"),
            Self::Hertz(v) => write!(f, "{v:.3}"),
            Self::Millis(v) => write!(f, "{v}"),
            Self::Percent(v) => write!(f, "{v:.1}"),
            Self::Watts(v) => write!(f, "{v:.0}"),
            Self::Degrees(v) => write!(f, "{v}"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

/// A setting that cannot be used: the field, the value and the rule it breaks
/// (`"island settings: field 'under_voltage.delay' = 0 ms must be > 0"`).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("island settings: field '{field}' = {value} {rule}")]
pub struct SettingsError {
    /// The field (dotted path inside [`IslandSettings`]).
    pub field: &'static str,
    /// The refused value.
    pub value: SettingValue,
    /// The rule, in words.
    pub rule: &'static str,
}

impl SettingsError {
    /// An error for `field`.
    #[must_use]
    pub const fn new(field: &'static str, value: SettingValue, rule: &'static str) -> Self {
        Self { field, value, rule }
    }
}

/// A voltage stage: trips when the voltage stays beyond `level` for `delay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoltageStage {
    /// The threshold.
    pub level: Volts,
    /// How long the condition must hold continuously (for the 10-min mean stage: zero, the
    /// mean itself is the delay).
    pub delay: Millis,
}

/// A frequency stage: trips when the frequency stays beyond `level` for `delay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrequencyStage {
    /// The threshold.
    pub level: Hertz,
    /// How long the condition must hold continuously.
    pub delay: Millis,
}

/// The rate-of-change-of-frequency stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocofStage {
    /// The limit, in Hz **per second** (a `Hertz` value read as Hz/s): trips when
    /// `|Δf / Δt| > limit` over `window`.
    pub limit: Hertz,
    /// The measuring window (the df/dt is taken between samples this far apart).
    pub window: Millis,
}

/// The interface-protection stages the detector evaluates on the grid side of the breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProtectionSettings {
    /// Nominal voltage Un (phase to neutral, the quantity the meter reports).
    pub nominal_voltage: Volts,
    /// Nominal frequency.
    pub nominal_frequency: Hertz,
    /// U< : 0.80 Un, 3.0 s (VDE-AR-N 4105:2018 Table 3).
    pub under_voltage: VoltageStage,
    /// U<< : 0.45 Un, 0.3 s (VDE-AR-N 4105:2018 Table 3).
    pub under_voltage_fast: VoltageStage,
    /// U>> : 1.25 Un, 0.1 s (VDE-AR-N 4105:2018 Table 3).
    pub over_voltage_fast: VoltageStage,
    /// U> : 1.10 Un as a 10-min moving mean (VDE-AR-N 4105:2018, EN 50549-1:2019 §4.9.3).
    pub over_voltage_mean: VoltageStage,
    /// f< : 47.5 Hz, 0.1 s.
    pub under_frequency: FrequencyStage,
    /// f> : 51.5 Hz, 0.1 s.
    pub over_frequency: FrequencyStage,
    /// RoCoF: 2.0 Hz/s over 500 ms (**Assumption**, see the module doc).
    pub rocof: RocofStage,
}

/// The window the grid must hold before the site (re)connects: EN 50549-1:2019 §4.10.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnterService {
    /// Lowest frequency (49.9 Hz).
    pub f_min: Hertz,
    /// Highest frequency (50.1 Hz).
    pub f_max: Hertz,
    /// Lowest voltage (0.85 Un).
    pub u_min: Volts,
    /// Highest voltage (1.10 Un).
    pub u_max: Volts,
    /// Continuous time inside the window (60 s).
    pub delay: Millis,
    /// Active-power gradient after reconnection, in % of Pn per **minute** (10 %).
    pub ramp_per_min: Percent,
}

/// The synchro-check across the breaker before closing onto a live island (IEEE 1547-2018
/// Table 5, ≤ 500 kVA), and the dead-bus level below which the island side counts as dead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncCheck {
    /// Largest frequency difference (0.3 Hz).
    pub max_df: Hertz,
    /// Largest voltage difference (10 % Un).
    pub max_du: Volts,
    /// Largest phase difference (20°).
    pub max_phase: Degrees,
    /// Below this the island bus is dead and may be closed onto without synchronising
    /// (0.10 Un, **Assumption**).
    pub dead_bus: Volts,
}

/// The window the island bus must hold while grid-forming (checked after energising, before
/// loads are added, and before each further load). **Assumption:** 0.90–1.10 Un and
/// 49.0–51.0 Hz (a backup supply's own tolerance, wider than the grid's enter-service window).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BusWindow {
    /// Lowest voltage.
    pub u_min: Volts,
    /// Highest voltage.
    pub u_max: Volts,
    /// Lowest frequency.
    pub f_min: Hertz,
    /// Highest frequency.
    pub f_max: Hertz,
}

/// Timings and margins of the sequence. Every value is an **Assumption**.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequenceSettings {
    /// A breaker command must show in the read-back within this (2 s).
    pub breaker_verify: Millis,
    /// An inverter mode command must show in the read-back, and the bus must be in its window,
    /// within this (5 s; it includes the grid-forming soft start).
    pub forming_verify: Millis,
    /// A load relay must show its commanded position within this (1 s).
    pub relay_verify: Millis,
    /// Time between two load energisations (5 s): loads come back one by one.
    pub load_step_interval: Millis,
    /// The bus must have been in its window this long before the next load (1 s).
    pub settle_time: Millis,
    /// Largest single load step, in % of the inverter rating (50 %); a larger circuit stays off.
    pub max_load_step: Percent,
    /// Headroom kept above a load's nominal power before it is energised (20 %).
    pub restore_margin: Percent,
    /// Shed when the island load exceeds this share of the available power (95 %).
    pub shed_level: Percent,
    /// Time between two sheds (500 ms).
    pub shed_interval: Millis,
    /// No restoring for this long after a shed (30 s).
    pub restore_delay: Millis,
    /// Below this SOC only critical (priority 0) circuits stay on (20 %); an unknown SOC counts
    /// as below.
    pub critical_only_soc: Percent,
    /// The island cannot be held when the available discharge power stays zero this long
    /// (5 s): the sequence goes to blackout.
    pub no_energy_delay: Millis,
    /// Synchronisation must succeed within this after the grid met its enter-service window,
    /// else the attempt fails and the enter-service delay starts again (60 s).
    pub sync_timeout: Millis,
    /// Black start on its own from a blackout after this (`None`: only on request).
    pub auto_black_start: Option<Millis>,
}

/// Everything the island function needs: [`IslandSettings::en50549_vde4105`] gives the defaults
/// for a 230 V / 50 Hz low-voltage site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandSettings {
    /// Interface-protection stages.
    pub protection: ProtectionSettings,
    /// Enter-service window and ramp.
    pub enter_service: EnterService,
    /// Synchro-check.
    pub sync: SyncCheck,
    /// The island bus's own window.
    pub bus: BusWindow,
    /// Timings and margins.
    pub sequence: SequenceSettings,
}

/// `un` scaled by `pu` (saturating).
fn pu(un: Volts, pu: f32) -> Volts {
    un.scale(pu)
}

impl IslandSettings {
    /// The defaults of the module doc for nominal voltage `un` (230 V for a European LV site),
    /// at 50 Hz.
    #[must_use]
    pub fn en50549_vde4105(un: Volts) -> Self {
        let ms = Millis::new;
        Self {
            protection: ProtectionSettings {
                nominal_voltage: un,
                nominal_frequency: ems_core::hertz!(50.0),
                under_voltage: VoltageStage { level: pu(un, 0.80), delay: ms(3_000) },
                under_voltage_fast: VoltageStage { level: pu(un, 0.45), delay: ms(300) },
                over_voltage_fast: VoltageStage { level: pu(un, 1.25), delay: ms(100) },
                over_voltage_mean: VoltageStage { level: pu(un, 1.10), delay: Millis::ZERO },
                under_frequency: FrequencyStage { level: ems_core::hertz!(47.5), delay: ms(100) },
                over_frequency: FrequencyStage { level: ems_core::hertz!(51.5), delay: ms(100) },
                rocof: RocofStage { limit: ems_core::hertz!(2.0), window: ms(500) },
            },
            enter_service: EnterService {
                f_min: ems_core::hertz!(49.9),
                f_max: ems_core::hertz!(50.1),
                u_min: pu(un, 0.85),
                u_max: pu(un, 1.10),
                delay: Millis::from_secs(60),
                ramp_per_min: ems_core::percent!(10.0),
            },
            sync: SyncCheck {
                max_df: ems_core::hertz!(0.3),
                max_du: pu(un, 0.10),
                max_phase: Degrees::literal(20.0),
                dead_bus: pu(un, 0.10),
            },
            bus: BusWindow {
                u_min: pu(un, 0.90),
                u_max: pu(un, 1.10),
                f_min: ems_core::hertz!(49.0),
                f_max: ems_core::hertz!(51.0),
            },
            sequence: SequenceSettings {
                breaker_verify: ms(2_000),
                forming_verify: ms(5_000),
                relay_verify: ms(1_000),
                load_step_interval: ms(5_000),
                settle_time: ms(1_000),
                max_load_step: ems_core::percent!(50.0),
                restore_margin: ems_core::percent!(20.0),
                shed_level: ems_core::percent!(95.0),
                shed_interval: ms(500),
                restore_delay: Millis::from_secs(30),
                critical_only_soc: ems_core::percent!(20.0),
                no_energy_delay: ms(5_000),
                sync_timeout: Millis::from_secs(60),
                auto_black_start: None,
            },
        }
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`SettingsError`] naming the first bad field, its value and the rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let p = &self.protection;
        let un = p.nominal_voltage;
        positive_v("protection.nominal_voltage", un)?;
        positive_f("protection.nominal_frequency", p.nominal_frequency)?;
        below("protection.under_voltage.level", p.under_voltage.level, un)?;
        below("protection.under_voltage_fast.level", p.under_voltage_fast.level, p.under_voltage.level)?;
        above("protection.over_voltage_mean.level", p.over_voltage_mean.level, un)?;
        above("protection.over_voltage_fast.level", p.over_voltage_fast.level, p.over_voltage_mean.level)?;
        positive_ms("protection.under_voltage.delay", p.under_voltage.delay)?;
        positive_ms("protection.under_voltage_fast.delay", p.under_voltage_fast.delay)?;
        positive_ms("protection.over_voltage_fast.delay", p.over_voltage_fast.delay)?;
        positive_ms("protection.under_frequency.delay", p.under_frequency.delay)?;
        positive_ms("protection.over_frequency.delay", p.over_frequency.delay)?;
        if p.under_frequency.level >= p.nominal_frequency {
            return Err(err_f(
                "protection.under_frequency.level",
                p.under_frequency.level,
                "must be < nominal",
            ));
        }
        if p.over_frequency.level <= p.nominal_frequency {
            return Err(err_f(
                "protection.over_frequency.level",
                p.over_frequency.level,
                "must be > nominal",
            ));
        }
        positive_f("protection.rocof.limit", p.rocof.limit)?;
        if p.rocof.window.get() < 100 || p.rocof.window.get() > 5_000 {
            return Err(SettingsError::new(
                "protection.rocof.window",
                SettingValue::Millis(p.rocof.window),
                "must be within 100 ms ..= 5 s",
            ));
        }
        let e = &self.enter_service;
        if e.f_min >= e.f_max {
            return Err(err_f("enter_service.f_min", e.f_min, "must be < f_max"));
        }
        if e.f_min < p.under_frequency.level || e.f_max > p.over_frequency.level {
            return Err(err_f("enter_service.f_min", e.f_min, "window must lie inside the frequency stages"));
        }
        if e.u_min >= e.u_max {
            return Err(SettingsError::new(
                "enter_service.u_min",
                SettingValue::Volts(e.u_min),
                "must be < u_max",
            ));
        }
        if e.u_min <= p.under_voltage.level || e.u_max > p.over_voltage_mean.level {
            return Err(SettingsError::new(
                "enter_service.u_min",
                SettingValue::Volts(e.u_min),
                "window must lie inside the voltage stages",
            ));
        }
        positive_ms("enter_service.delay", e.delay)?;
        if e.ramp_per_min.get() <= 0.0 {
            return Err(SettingsError::new(
                "enter_service.ramp_per_min",
                SettingValue::Percent(e.ramp_per_min),
                "must be > 0 %/min",
            ));
        }
        positive_f("sync.max_df", self.sync.max_df)?;
        positive_v("sync.max_du", self.sync.max_du)?;
        if self.sync.max_phase.get() <= 0.0 {
            return Err(SettingsError::new(
                "sync.max_phase",
                SettingValue::Degrees(self.sync.max_phase),
                "must be > 0°",
            ));
        }
        if self.sync.dead_bus >= self.bus.u_min {
            return Err(SettingsError::new(
                "sync.dead_bus",
                SettingValue::Volts(self.sync.dead_bus),
                "must be below bus.u_min",
            ));
        }
        if self.bus.u_min >= self.bus.u_max || self.bus.f_min >= self.bus.f_max {
            return Err(SettingsError::new(
                "bus.u_min",
                SettingValue::Volts(self.bus.u_min),
                "must be < u_max",
            ));
        }
        let s = &self.sequence;
        positive_ms("sequence.breaker_verify", s.breaker_verify)?;
        positive_ms("sequence.forming_verify", s.forming_verify)?;
        positive_ms("sequence.relay_verify", s.relay_verify)?;
        positive_ms("sequence.shed_interval", s.shed_interval)?;
        positive_ms("sequence.sync_timeout", s.sync_timeout)?;
        if s.shed_level.get() <= 0.0 {
            return Err(SettingsError::new(
                "sequence.shed_level",
                SettingValue::Percent(s.shed_level),
                "must be > 0 %",
            ));
        }
        if s.max_load_step.get() <= 0.0 {
            return Err(SettingsError::new(
                "sequence.max_load_step",
                SettingValue::Percent(s.max_load_step),
                "must be > 0 %",
            ));
        }
        Ok(())
    }
}

fn err_f(field: &'static str, v: Hertz, rule: &'static str) -> SettingsError {
    SettingsError::new(field, SettingValue::Hertz(v), rule)
}

fn positive_v(field: &'static str, v: Volts) -> Result<(), SettingsError> {
    if v.get() > 0.0 {
        Ok(())
    } else {
        Err(SettingsError::new(field, SettingValue::Volts(v), "must be > 0 V"))
    }
}

fn positive_f(field: &'static str, v: Hertz) -> Result<(), SettingsError> {
    if v.get() > 0.0 {
        Ok(())
    } else {
        Err(err_f(field, v, "must be > 0 Hz"))
    }
}

fn positive_ms(field: &'static str, v: Millis) -> Result<(), SettingsError> {
    if v > Millis::ZERO {
        Ok(())
    } else {
        Err(SettingsError::new(field, SettingValue::Millis(v), "must be > 0 ms"))
    }
}

fn below(field: &'static str, v: Volts, limit: Volts) -> Result<(), SettingsError> {
    if v < limit {
        Ok(())
    } else {
        Err(SettingsError::new(field, SettingValue::Volts(v), "must be below the level above it"))
    }
}

fn above(field: &'static str, v: Volts, limit: Volts) -> Result<(), SettingsError> {
    if v > limit {
        Ok(())
    } else {
        Err(SettingsError::new(field, SettingValue::Volts(v), "must be above the level below it"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_scale_with_un() {
        let s = IslandSettings::en50549_vde4105(ems_core::volts!(230.0));
        assert_eq!(s.validate(), Ok(()));
        assert!((s.protection.under_voltage.level.get() - 184.0).abs() < 0.01);
        assert!((s.enter_service.u_min.get() - 195.5).abs() < 0.01);
        assert!((s.enter_service.u_max.get() - 253.0).abs() < 0.01);
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let mut s = IslandSettings::en50549_vde4105(ems_core::volts!(230.0));
        s.protection.under_voltage.delay = Millis::ZERO;
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "protection.under_voltage.delay");
        assert_eq!(
            e.to_string(),
            "island settings: field 'protection.under_voltage.delay' = 0 ms must be > 0 ms"
        );
        let mut s = IslandSettings::en50549_vde4105(ems_core::volts!(230.0));
        s.enter_service.f_max = ems_core::hertz!(49.8);
        assert_eq!(s.validate().unwrap_err().field, "enter_service.f_min");
    }

    #[test]
    fn angles_wrap_and_refuse_nan() {
        assert!((Degrees::try_new(350.0).unwrap().get() + 10.0).abs() < 1e-4);
        assert!((Degrees::try_new(-190.0).unwrap().get() - 170.0).abs() < 1e-4);
        assert!(Degrees::try_new(f32::NAN).is_err());
        assert_eq!(Degrees::literal(-20.0).abs(), Degrees::literal(20.0));
    }
}
