//! [`LoadpointConfig`]: currents, thresholds, delays and the phase-switching rules, validated
//! into [`Limits`] before a loadpoint runs.

use super::types::DeciAmps;
use ems_core::{Amps, Millis, Watts};

/// Settings of one loadpoint (unvalidated; [`LoadpointConfig::validate`] checks them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadpointConfig {
    /// Smallest charging current (IEC 61851: at least 6 A).
    pub min_current: Amps,
    /// Largest charging current (at most the circuit's breaker rating).
    pub max_current: Amps,
    /// The charger circuit's breaker rating per phase.
    pub circuit_limit: Amps,
    /// Mode `pv`: extra surplus above the minimum power needed to start (≥ 0).
    pub enable_threshold: Watts,
    /// Mode `pv`: the grid import the car may cause at its minimum current before the disable
    /// delay starts (evcc's disable threshold): the delay runs while
    /// `surplus < min power − disable_threshold`. 0 W (default) = as soon as the car would
    /// import; negative = while the site still exports, so that a slow decline (dusk) stops
    /// the car before it imports. Must not exceed `enable_threshold` in the other direction
    /// (`enable_threshold + disable_threshold ≥ 0`), so the start level is above the stop level.
    pub disable_threshold: Watts,
    /// The grid power the surplus controller leaves unused (≥ 0; evcc's "residual power"):
    /// a margin against meter noise and load steps, and the dead band of the current: it is
    /// lowered only when the car would import, raised only when the surplus exceeds the
    /// current's power by this margin plus one 0.1 A step (default 100 W).
    pub residual_power: Watts,
    /// Shortest time between two raises of the current (decreases are immediate; default
    /// 10 s, above `SafeEvse`'s 5 s minimum write interval).
    pub raise_interval: Millis,
    /// Mode `pv`: the surplus must last this long before charging starts (default 1 min);
    /// also the time before a switch up to three phases.
    pub enable_delay: Millis,
    /// Mode `pv`: the deficit must last this long before charging stops (default 3 min);
    /// also the time before a switch down to one phase.
    pub disable_delay: Millis,
    /// The charger can switch between one and three phases (its capability).
    pub charger_can_switch_phases: bool,
    /// The vehicle is known to switch phases safely while plugged in (default false). Without
    /// it the phases never change while a vehicle is plugged in.
    pub vehicle_can_switch_phases: bool,
    /// Minimum time between two phase switches (default 10 min).
    pub phase_dwell: Millis,
    /// Charging stays disabled this long before the phases change (default 2 min).
    pub phase_switch_pause: Millis,
    /// A charging house battery counts as surplus for the car (default false: the battery's
    /// charging power is its own; see `docs/ARCHITECTURE.md`, "priority SOC").
    pub battery_charge_is_surplus: bool,
}

impl Default for LoadpointConfig {
    /// 6 ..= 16 A on a 16 A circuit; start after 1 min of surplus, stop after 3 min of deficit;
    /// 100 W residual power, raises at most every 10 s;
    /// no phase switching (neither capability set), 10 min dwell and a 2 min pause when enabled.
    fn default() -> Self {
        Self {
            min_current: ems_core::amps!(6.0),
            max_current: ems_core::amps!(16.0),
            circuit_limit: ems_core::amps!(16.0),
            enable_threshold: Watts::ZERO,
            disable_threshold: Watts::ZERO,
            residual_power: ems_core::watts!(100.0),
            raise_interval: Millis::from_secs(10),
            enable_delay: Millis::from_secs(60),
            disable_delay: Millis::from_secs(180),
            charger_can_switch_phases: false,
            vehicle_can_switch_phases: false,
            phase_dwell: Millis::from_secs(600),
            phase_switch_pause: Millis::from_secs(120),
            battery_charge_is_surplus: false,
        }
    }
}

/// The smallest minimum current (IEC 61851-1: a PWM duty below 6 A means "no charging").
pub const IEC_MIN_CURRENT: Amps = ems_core::amps!(6.0);

/// A loadpoint setting that is not acceptable, naming the field and its value.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum LoadpointConfigError {
    /// A current field.
    #[error("loadpoint: field '{field}' = {value} must be {expected}")]
    Current {
        /// The field.
        field: &'static str,
        /// Its value.
        value: Amps,
        /// What is accepted.
        expected: &'static str,
    },
    /// A power field.
    #[error("loadpoint: field '{field}' = {value} must be {expected}")]
    Power {
        /// The field.
        field: &'static str,
        /// Its value.
        value: Watts,
        /// What is accepted.
        expected: &'static str,
    },
    /// A duration field.
    #[error("loadpoint: field '{field}' = {value} must be {expected}")]
    Duration {
        /// The field.
        field: &'static str,
        /// Its value.
        value: Millis,
        /// What is accepted.
        expected: &'static str,
    },
}

/// The validated currents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Lowest non-zero current.
    pub min: DeciAmps,
    /// Highest current.
    pub max: DeciAmps,
}

fn current(field: &'static str, value: Amps) -> Result<DeciAmps, LoadpointConfigError> {
    DeciAmps::from_amps_floor(value.get()).ok_or(LoadpointConfigError::Current {
        field,
        value,
        expected: "0 ..= 800 A",
    })
}

impl LoadpointConfig {
    /// Check every field.
    ///
    /// # Errors
    /// [`LoadpointConfigError`] naming the first field that is not acceptable and its value:
    /// `min_current` below 6 A, `circuit_limit` zero, `max_current` below `min_current` or above
    /// `circuit_limit`, a negative enable threshold or residual power, a disable threshold
    /// below `−enable_threshold`, a zero delay, dwell, pause or raise interval.
    pub fn validate(&self) -> Result<Limits, LoadpointConfigError> {
        let min = current("min_current", self.min_current)?;
        if self.min_current < IEC_MIN_CURRENT {
            return Err(LoadpointConfigError::Current {
                field: "min_current",
                value: self.min_current,
                expected: ">= 6 A (IEC 61851)",
            });
        }
        let circuit = current("circuit_limit", self.circuit_limit)?;
        if circuit.is_zero() {
            return Err(LoadpointConfigError::Current {
                field: "circuit_limit",
                value: self.circuit_limit,
                expected: "> 0 A",
            });
        }
        let max = current("max_current", self.max_current)?;
        if max < min {
            return Err(LoadpointConfigError::Current {
                field: "max_current",
                value: self.max_current,
                expected: ">= min_current",
            });
        }
        if self.max_current > self.circuit_limit {
            return Err(LoadpointConfigError::Current {
                field: "max_current",
                value: self.max_current,
                expected: "<= circuit_limit",
            });
        }
        for (field, value) in
            [("enable_threshold", self.enable_threshold), ("residual_power", self.residual_power)]
        {
            if value < Watts::ZERO {
                return Err(LoadpointConfigError::Power { field, value, expected: ">= 0 W" });
            }
        }
        if self.enable_threshold.get() + self.disable_threshold.get() < 0.0 {
            return Err(LoadpointConfigError::Power {
                field: "disable_threshold",
                value: self.disable_threshold,
                expected: ">= -enable_threshold (charging must start above the level where it stops)",
            });
        }
        for (field, value) in [
            ("enable_delay", self.enable_delay),
            ("disable_delay", self.disable_delay),
            ("phase_dwell", self.phase_dwell),
            ("phase_switch_pause", self.phase_switch_pause),
            ("raise_interval", self.raise_interval),
        ] {
            if value == Millis::ZERO {
                return Err(LoadpointConfigError::Duration { field, value, expected: "> 0 ms" });
            }
        }
        Ok(Limits { min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let limits = LoadpointConfig::default().validate().unwrap();
        assert_eq!(limits.min.tenths(), 60);
        assert_eq!(limits.max.tenths(), 160);
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let cases: [(LoadpointConfig, &str); 6] = [
            (
                LoadpointConfig { min_current: ems_core::amps!(5.0), ..Default::default() },
                "'min_current' = 5.0 A",
            ),
            (
                LoadpointConfig { max_current: ems_core::amps!(20.0), ..Default::default() },
                "'max_current' = 20.0 A",
            ),
            (
                LoadpointConfig {
                    max_current: ems_core::amps!(5.9),
                    min_current: ems_core::amps!(6.0),
                    ..Default::default()
                },
                "'max_current' = 5.9 A must be >= min_current",
            ),
            (LoadpointConfig { circuit_limit: Amps::ZERO, ..Default::default() }, "'circuit_limit' = 0.0 A"),
            (LoadpointConfig { enable_delay: Millis::ZERO, ..Default::default() }, "'enable_delay' = 0 ms"),
            (
                LoadpointConfig { disable_threshold: ems_core::watts!(-10.0), ..Default::default() },
                "'disable_threshold' = -10.0 W must be >= -enable_threshold",
            ),
        ];
        for (config, want) in cases {
            let text = config.validate().unwrap_err().to_string();
            assert!(text.contains(want), "{text} lacks {want}");
        }
    }
}
