//! The EVSE vocabulary: the 0.1 A current step, status, phases, a reading and the capabilities.

use core::fmt;
use ems_core::{Amps, WattHours, Watts};

/// A charging current limit in steps of 0.1 A (the resolution of IEC 61851 PWM set-points and of
/// OCPP charging schedules as used here), 0 ..= [`DeciAmps::MAX`].
///
/// Entry is fallible ([`DeciAmps::try_from_amps`]): a negative, non-finite or too large current
/// is refused with the value named, never clamped. Amps are rounded *down* to the next 0.1 A
/// step, so a conversion can never raise a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DeciAmps(u16);

/// A current that is not a valid EVSE limit.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("current limit {value} A is not in 0 ..= 800 A")]
pub struct DeciAmpsError {
    /// The rejected value in amperes.
    pub value: f32,
}

impl DeciAmps {
    /// Zero: no charging.
    pub const ZERO: Self = Self(0);
    /// The largest limit accepted (800 A, above any AC charge point).
    pub const MAX: Self = Self(8000);

    /// From tenths of an ampere; `None` above [`Self::MAX`].
    #[must_use]
    pub const fn from_tenths(tenths: u16) -> Option<Self> {
        if tenths <= Self::MAX.0 {
            Some(Self(tenths))
        } else {
            None
        }
    }

    /// From amperes, rounded down to 0.1 A.
    ///
    /// # Errors
    /// [`DeciAmpsError`] naming the value when it is negative, not finite or above 800 A.
    pub fn try_from_amps(amps: f32) -> Result<Self, DeciAmpsError> {
        if !amps.is_finite() || !(0.0..=800.0).contains(&amps) {
            return Err(DeciAmpsError { value: amps });
        }
        // 1e-3 absorbs binary representation error (6.3 is 62.999…); 0..=8000 fits a u16.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let tenths = (amps * 10.0 + 1e-3).floor() as u16;
        Ok(Self(tenths.min(Self::MAX.0)))
    }

    /// Tenths of an ampere.
    #[must_use]
    pub const fn tenths(self) -> u16 {
        self.0
    }

    /// The limit in amperes.
    #[must_use]
    pub fn as_amps(self) -> Amps {
        Amps::saturating(self.as_f32())
    }

    /// The limit in amperes as a plain number (for wire formats).
    #[must_use]
    pub fn as_f32(self) -> f32 {
        f32::from(self.0) / 10.0
    }

    /// Whether this is zero.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for DeciAmps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} A", self.0 / 10, self.0 % 10)
    }
}

/// The state of the charge point's connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvseStatus {
    /// No vehicle connected.
    Unplugged,
    /// A vehicle is connected and not drawing current (waiting, suspended, finished).
    Plugged,
    /// A vehicle is connected and charging.
    Charging,
    /// The charge point reports a fault or is unavailable.
    Fault,
}

impl fmt::Display for EvseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unplugged => "unplugged",
            Self::Plugged => "plugged",
            Self::Charging => "charging",
            Self::Fault => "fault",
        })
    }
}

/// How many phases the charge point switches to the vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phases {
    /// Single phase (L1).
    One,
    /// Three phases.
    Three,
}

impl Phases {
    /// 1 or 3.
    #[must_use]
    pub const fn count(self) -> u8 {
        match self {
            Self::One => 1,
            Self::Three => 3,
        }
    }
}

/// Nominal phase voltage used to turn currents into power (230 V, EN 50160).
pub const NOMINAL_PHASE_VOLTS: f32 = 230.0;

/// One EVSE reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvseReading {
    /// Connector status.
    pub status: EvseStatus,
    /// Phases switched to the vehicle.
    pub phases: Phases,
    /// Measured current per phase L1, L2, L3 (0 on a phase not in use).
    pub current: [Amps; 3],
    /// Active power drawn by the vehicle (≥ 0; a load, as seen from the site).
    pub power: Watts,
    /// Energy delivered in the current session (0 when unplugged).
    pub session_energy: WattHours,
    /// The current limit the device reports applying (read back from the device, not
    /// remembered by the driver).
    pub applied_limit: DeciAmps,
    /// Whether charging is enabled.
    pub enabled: bool,
}

impl EvseReading {
    /// The largest measured phase current.
    #[must_use]
    pub fn max_phase_current(&self) -> Amps {
        self.current[0].max(self.current[1]).max(self.current[2])
    }
}

/// What a charge point supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvseCapabilities {
    /// The smallest current at which it charges (IEC 61851: 6 A); a limit below it stops charging.
    pub min_current: DeciAmps,
    /// Its rated maximum current per phase.
    pub max_current: DeciAmps,
    /// Whether it can switch between one and three phases.
    pub phase_switching: bool,
}
