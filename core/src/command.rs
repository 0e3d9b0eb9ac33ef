//! What the control core tells the devices to do in one cycle.

use crate::units::Watts;
use core::fmt;

/// Main contactor command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactorCommand {
    /// Open the contactor (and the pre-charge relay).
    Open,
    /// Keep whatever position the contactor has (no request either way).
    Hold,
    /// Pre-charge, then close the main contactor. The device sequences pre-charge itself and
    /// reports it through `Snapshot::precharge_done` and `Snapshot::contactor`.
    Close,
}

impl fmt::Display for ContactorCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "OPEN",
            Self::Hold => "HOLD",
            Self::Close => "CLOSE",
        })
    }
}

/// The command for one cycle, after the final safety clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Command {
    /// Battery (inverter AC) active power set-point, `+` discharge / `−` charge.
    pub battery_setpoint: Watts,
    /// Main contactor.
    pub contactor: ContactorCommand,
}

impl Command {
    /// Zero power, contactors open: the safe command.
    pub const SAFE: Self = Self { battery_setpoint: Watts::ZERO, contactor: ContactorCommand::Open };
}
