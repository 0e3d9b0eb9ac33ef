//! [`Command`]: what one cycle tells the devices. Only [`crate::Controller::step`] makes one.
//!
//! **Architecture Invariant:** a device command can only be built by `Controller::step`. The
//! fields are private and the constructor is crate-private, so code outside `ems-control` —
//! the device layer, the runtime, the API, a strategy — can read a command but never forge one
//! that skipped the final clamp. The device layer's `apply` takes nothing else. Checked by the
//! `compile_fail` examples below (run as doc tests).
//!
//! ```compile_fail,E0451
//! // Outside ems-control a command cannot be built from its fields …
//! use ems_core::{ContactorCommand, Watts};
//! let c = ems_control::Command {
//!     setpoint: Watts::ZERO,
//!     max_charge: Watts::ZERO,
//!     max_discharge: Watts::ZERO,
//!     contactor: ContactorCommand::Open,
//!     ramp: None,
//!     class: ems_control::CommandClass::Comfort,
//! };
//! ```
//!
//! ```compile_fail,E0624
//! // … nor through the crate-private constructor.
//! let c = ems_control::Command::new(
//!     ems_core::Watts::ZERO,
//!     (ems_core::Watts::ZERO, ems_core::Watts::ZERO),
//!     ems_core::ContactorCommand::Open,
//!     None,
//!     ems_control::CommandClass::Comfort,
//! );
//! ```
//!
//! ```
//! // Reading one is fine, and the safe command is public.
//! let c = ems_control::Command::SAFE;
//! assert_eq!(c.setpoint(), ems_core::Watts::ZERO);
//! ```

use crate::ramp::RampRate;
use core::fmt;
use ems_core::{ContactorCommand, Watts};

/// How the device layer may shape a command on its way to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandClass {
    /// Ordinary energy management: the device wrapper's deadband and flash-write budget apply.
    Comfort,
    /// A grid-service response (frequency containment, droop): the wrapper writes it without
    /// deadband or flash budget, at the command's own ramp, but never outside the command's
    /// bounds or the device rating.
    GridService,
}

impl fmt::Display for CommandClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Comfort => "comfort",
            Self::GridService => "grid service",
        })
    }
}

/// The command of one cycle, after the final safety clamp: the battery set-point together with
/// the bounds it was clamped to, the contactor command, the ramp the set-point obeys and its
/// class. Built only by [`crate::Controller::step`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Command {
    setpoint: Watts,
    max_charge: Watts,
    max_discharge: Watts,
    contactor: ContactorCommand,
    ramp: Option<RampRate>,
    class: CommandClass,
}

impl Command {
    /// Zero power inside zero bounds, contactors open: the safe command.
    pub const SAFE: Self = Self {
        setpoint: Watts::ZERO,
        max_charge: Watts::ZERO,
        max_discharge: Watts::ZERO,
        contactor: ContactorCommand::Open,
        ramp: None,
        class: CommandClass::Comfort,
    };

    /// A command from the final clamp. `bounds` are the (charge, discharge) magnitudes of the
    /// envelope the set-point was clamped into; the set-point lies inside them by construction
    /// of the clamp, and is cut into them here once more so that no caller inside this crate can
    /// make an inconsistent one either.
    pub(crate) fn new(
        setpoint: Watts,
        bounds: (Watts, Watts),
        contactor: ContactorCommand,
        ramp: Option<RampRate>,
        class: CommandClass,
    ) -> Self {
        let (max_charge, max_discharge) = (bounds.0.abs(), bounds.1.abs());
        Self {
            setpoint: setpoint.clamp(-max_charge, max_discharge),
            max_charge,
            max_discharge,
            contactor,
            ramp,
            class,
        }
    }

    /// A command for tests of the device layer (feature `_test-access`, never enabled by a
    /// production build; CI checks the gateway's dependency tree for it).
    #[cfg(feature = "_test-access")]
    #[must_use]
    pub fn for_test(
        setpoint: Watts,
        bounds: (Watts, Watts),
        contactor: ContactorCommand,
        ramp: Option<RampRate>,
        class: CommandClass,
    ) -> Self {
        Self::new(setpoint, bounds, contactor, ramp, class)
    }

    /// Battery (inverter AC) active power set-point, `+` discharge / `−` charge.
    #[must_use]
    pub const fn setpoint(&self) -> Watts {
        self.setpoint
    }

    /// The (charge, discharge) magnitudes the set-point was clamped into: this cycle's envelope.
    #[must_use]
    pub const fn bounds(&self) -> (Watts, Watts) {
        (self.max_charge, self.max_discharge)
    }

    /// Main contactor.
    #[must_use]
    pub const fn contactor(&self) -> ContactorCommand {
        self.contactor
    }

    /// The ramp the set-point obeys (the site's ramp, or a grid service's own); `None` for a
    /// step (the safe command, a grid service without ramp).
    #[must_use]
    pub const fn ramp(&self) -> Option<RampRate> {
        self.ramp
    }

    /// Comfort or grid service.
    #[must_use]
    pub const fn class(&self) -> CommandClass {
        self.class
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:+.0} (within −{:.0}..+{:.0}), contactor {}, {}",
            self.setpoint, self.max_charge, self.max_discharge, self.contactor, self.class
        )
    }
}
