//! The contactor command. The device command itself (`ems_control::Command`) lives in
//! `ems-control`, the only crate that may build one.

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
