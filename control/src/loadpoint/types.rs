//! The loadpoint vocabulary: charge modes, the charger's status and phases as the control core
//! sees them, the 0.1 A current step, and the reasons an operator reads.
//!
//! The EVSE device types live in `ems-devices`; this no_std crate does not depend on the device
//! layer (design.md §2), so the few it needs are mirrored here and the shell maps one onto the
//! other (`status`, `phases`, and currents through [`DeciAmps::tenths`]).

use core::fmt;
use ems_core::{Millis, Watts};

/// How a loadpoint charges (evcc's modes, because integrators know them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChargeMode {
    /// Never charge.
    #[default]
    Off,
    /// Charge at the maximum current at once, from whatever source.
    Now,
    /// Charge at least at the minimum current; more from PV surplus.
    MinPv,
    /// Charge only from PV surplus (start and stop with delays).
    Pv,
}

impl ChargeMode {
    /// The mode's name as written in configs and APIs (`off`, `now`, `minpv`, `pv`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Now => "now",
            Self::MinPv => "minpv",
            Self::Pv => "pv",
        }
    }

    /// Parse a mode name.
    ///
    /// # Errors
    /// [`UnknownChargeMode`] when the name is none of `off`, `now`, `minpv`, `pv`.
    pub fn from_name(name: &str) -> Result<Self, UnknownChargeMode> {
        match name {
            "off" => Ok(Self::Off),
            "now" => Ok(Self::Now),
            "minpv" => Ok(Self::MinPv),
            "pv" => Ok(Self::Pv),
            _ => Err(UnknownChargeMode),
        }
    }
}

impl fmt::Display for ChargeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A charge mode name that is not one of `off`, `now`, `minpv`, `pv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("charge mode must be one of 'off', 'now', 'minpv', 'pv'")]
pub struct UnknownChargeMode;

/// The charger's connector status (mirror of `ems_devices::evse::EvseStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VehicleStatus {
    /// No vehicle connected.
    Unplugged,
    /// A vehicle is connected and not drawing current.
    Plugged,
    /// A vehicle is connected and charging.
    Charging,
    /// The charger reports a fault or is unavailable.
    Fault,
}

/// Phases switched to (or drawn by) the vehicle (mirror of `ems_devices::evse::Phases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phases {
    /// Single phase.
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

impl fmt::Display for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::One => "1p",
            Self::Three => "3p",
        })
    }
}

/// Nominal phase voltage used to turn currents into power (230 V, EN 50160), as the EVSE layer.
pub const PHASE_VOLTS: f32 = 230.0;

/// A charging current in steps of 0.1 A (mirror of `ems_devices::evse::DeciAmps`; the shell
/// converts with `tenths`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DeciAmps(u16);

impl DeciAmps {
    /// Zero: no charging.
    pub const ZERO: Self = Self(0);
    /// The largest current (800 A), as the EVSE layer.
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

    /// From amperes, rounded *down* to 0.1 A (a conversion never raises a current); `None`
    /// when negative, not finite or above 800 A.
    #[must_use]
    pub fn from_amps_floor(amps: f32) -> Option<Self> {
        if !amps.is_finite() || !(0.0..=800.0).contains(&amps) {
            return None;
        }
        // 1e-3 absorbs binary representation error (6.3 is 62.999…); the value is finite and
        // in 0 ..= 8000.001, so truncation toward zero is the floor and fits a u16.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let tenths = (amps * 10.0 + 1e-3) as u16;
        Some(Self(tenths.min(Self::MAX.0)))
    }

    /// Tenths of an ampere.
    #[must_use]
    pub const fn tenths(self) -> u16 {
        self.0
    }

    /// The current in amperes as a plain number.
    #[must_use]
    pub fn as_f32(self) -> f32 {
        f32::from(self.0) / 10.0
    }

    /// Whether this is zero.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The power this current draws on `phases` at the nominal voltage.
    #[must_use]
    pub fn power(self, phases: Phases) -> Watts {
        Watts::saturating(self.as_f32() * PHASE_VOLTS * f32::from(phases.count()))
    }
}

impl fmt::Display for DeciAmps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} A", self.0 / 10, self.0 % 10)
    }
}

/// Power in kW with one decimal, as an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Kw(Watts);

impl fmt::Display for Kw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} kW", self.0.get() / 1000.0)
    }
}

/// Whole seconds, rounded up (a wait of 0.2 s still reads "1 s").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Secs(Millis);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0.get().div_ceil(1000))
    }
}

/// Why the loadpoint commands what it commands this cycle (the operator reads it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadpointReason {
    /// Mode `off`.
    ModeOff,
    /// No vehicle is plugged in.
    NoVehicle,
    /// The charger reports a fault.
    ChargerFault,
    /// Mode `now`: the maximum current.
    Now {
        /// The commanded current.
        current: DeciAmps,
    },
    /// Mode `minpv` with too little surplus: the minimum current.
    MinPvMinimum {
        /// The surplus this cycle.
        surplus: Watts,
        /// The commanded (minimum) current.
        current: DeciAmps,
    },
    /// Charging from PV surplus (modes `pv` and `minpv`).
    PvSurplus {
        /// The surplus this cycle.
        surplus: Watts,
        /// The commanded current.
        current: DeciAmps,
    },
    /// Mode `pv`, not charging: the surplus is below what the minimum current needs.
    WaitingForSurplus {
        /// The surplus this cycle.
        surplus: Watts,
        /// The power needed to start.
        needed: Watts,
    },
    /// Mode `pv`, not charging: enough surplus, waiting for the enable delay.
    EnableDelay {
        /// Time left until charging starts.
        remaining: Millis,
    },
    /// Mode `pv`, charging at the minimum current although the surplus is too small; charging
    /// stops when this lasts the disable delay.
    DisableDelay {
        /// The surplus this cycle.
        surplus: Watts,
        /// The power the minimum current needs.
        needed: Watts,
        /// Time left until charging stops.
        remaining: Millis,
    },
    /// A phase switch is in progress: charging is disabled for the pause.
    PhaseSwitchPause {
        /// The phases being switched to.
        to: Phases,
        /// Time left of the pause.
        remaining: Millis,
    },
    /// The phase switch happened this cycle (charging still disabled; it resumes next cycle).
    PhaseSwitched {
        /// The new phases.
        to: Phases,
    },
}

impl fmt::Display for LoadpointReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ModeOff => f.write_str("mode off"),
            Self::NoVehicle => f.write_str("no vehicle plugged in"),
            Self::ChargerFault => f.write_str("charger fault"),
            Self::Now { current } => write!(f, "now: maximum current {current}"),
            Self::MinPvMinimum { surplus, current } => {
                write!(f, "minpv: minimum current {current} (pv surplus {})", Kw(surplus))
            }
            Self::PvSurplus { surplus, current } => write!(f, "pv surplus {} ({current})", Kw(surplus)),
            Self::WaitingForSurplus { surplus, needed } => {
                write!(f, "waiting for surplus ({} < {} minimum)", Kw(surplus), Kw(needed))
            }
            Self::EnableDelay { remaining } => {
                write!(f, "waiting for surplus (enable delay {})", Secs(remaining))
            }
            Self::DisableDelay { surplus, needed, remaining } => write!(
                f,
                "pv surplus {} below {} minimum (disable delay {})",
                Kw(surplus),
                Kw(needed),
                Secs(remaining)
            ),
            Self::PhaseSwitchPause { to, remaining } => {
                write!(f, "phase switch to {to}: charging paused ({})", Secs(remaining))
            }
            Self::PhaseSwitched { to } => write!(f, "phase switch to {to}: switched, resuming"),
        }
    }
}

/// Why a phase switch that the surplus asks for does not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseBlock {
    /// The plugged vehicle is not known to switch phases safely (some vehicles bridge L1/L2 in
    /// one-phase mode; re-energising three phases while plugged in can short them).
    VehicleCannotSwitch,
    /// The last switch was too recent.
    Dwell {
        /// Time left of the minimum dwell time.
        remaining: Millis,
    },
}

impl fmt::Display for PhaseBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::VehicleCannotSwitch => f.write_str("phase switch blocked: vehicle cannot switch"),
            Self::Dwell { remaining } => {
                write!(f, "phase switch blocked: minimum dwell time ({} left)", Secs(remaining))
            }
        }
    }
}
