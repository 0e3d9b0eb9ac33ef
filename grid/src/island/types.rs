//! The vocabulary of the island sequence: its inputs, commands, states, reasons and events
//! (a leaf module apart from the settings, the loads and the detector's trip causes, so the
//! sequence and its users share it without importing each other).

use super::detect::{Detection, TripCause};
use super::loads::LoadMask;
use super::settings::Degrees;
use core::fmt;
use ems_core::snapshot::GridTie;
use ems_core::{Hertz, Millis, Percent, Volts, Watts};
use heapless::Vec;

/// Voltage and frequency on one side of the breaker (`None`: not good at `now`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Side {
    /// Voltage.
    pub voltage: Option<Volts>,
    /// Frequency.
    pub frequency: Option<Hertz>,
}

/// The inverter's operating mode as read back from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InverterMode {
    /// Not switching (no AC output).
    Off,
    /// Grid-following (current source, needs a grid).
    GridFollowing,
    /// Grid-forming (voltage source, holds the island bus).
    GridForming,
}

impl fmt::Display for InverterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "OFF",
            Self::GridFollowing => "GRID-FOLLOWING",
            Self::GridForming => "GRID-FORMING",
        })
    }
}

/// Everything the sequence reads in one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandInputs {
    /// The utility side of the grid-tie breaker.
    pub grid: Side,
    /// The site side (the island bus).
    pub bus: Side,
    /// Phase of the bus minus phase of the grid (`None`: not measured / not good).
    pub phase_difference: Option<Degrees>,
    /// The breaker's read-back (`None`: not good).
    pub breaker: Option<GridTie>,
    /// The inverter mode read back (`None`: not good).
    pub inverter: Option<InverterMode>,
    /// The inverter reports a fault.
    pub inverter_fault: bool,
    /// The load relays' read-back (`None`: not good).
    pub loads: Option<LoadMask>,
    /// The inverter's AC output (`+` discharge): what the island draws while grid-forming.
    pub island_load: Option<Watts>,
    /// The discharge power the safety envelope allows this cycle (≥ 0; the caller takes the
    /// minimum with the inverter's grid-forming rating).
    pub available: Watts,
    /// State of charge (`None`: not good; counts as low).
    pub soc: Option<Percent>,
}

/// What the breaker is told this cycle. `Open` and `Close` are operations (a latching breaker
/// or a transfer switch with its own hold), `Hold` leaves it where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerCommand {
    /// Leave it.
    Hold,
    /// Open (trip).
    Open,
    /// Close — only ever issued when every [`CloseConditions`] field is true.
    Close,
}

/// What the inverter is told this cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InverterCommand {
    /// Stop switching.
    Off,
    /// Grid-following: the EMS set-point applies.
    GridFollowing,
    /// Grid-forming at nominal voltage and frequency.
    GridForming,
    /// Grid-forming, steering voltage, frequency and phase onto the grid's (resynchronising).
    Synchronise,
}

/// The grid state the sequence reports (and other layers interlock on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GridState {
    /// Breaker position not known yet (start-up).
    Starting,
    /// On the grid (breaker closed and verified), grid-following.
    Connected,
    /// Grid lost: opening the breaker and switching the inverter to grid-forming.
    Transferring,
    /// Off the grid, the inverter forms the island bus.
    Islanded,
    /// Energising a dead bus from the battery.
    BlackStart,
    /// Islanded with the grid back: steering the island onto the grid.
    Resynchronising,
    /// Closing the breaker.
    Reconnecting,
    /// Breaker open, inverter off, no supply (no energy, or waiting for a black start).
    Blackout,
    /// A verification failed: breaker open, inverter off, latched until an operator reset.
    SafeStop,
}

impl fmt::Display for GridState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Starting => "STARTING",
            Self::Connected => "CONNECTED",
            Self::Transferring => "TRANSFERRING",
            Self::Islanded => "ISLANDED",
            Self::BlackStart => "BLACK START",
            Self::Resynchronising => "RESYNCHRONISING",
            Self::Reconnecting => "RECONNECTING",
            Self::Blackout => "BLACKOUT",
            Self::SafeStop => "SAFE STOP",
        })
    }
}

/// Why the sequence stopped in [`GridState::SafeStop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The breaker read-back did not show open within the verify time.
    BreakerFailedToOpen,
    /// The breaker read-back did not show closed within the verify time.
    BreakerFailedToClose,
    /// The breaker reads closed while the EMS did not close it (only the EMS may).
    BreakerClosedUnexpectedly,
    /// The breaker read-back was not good for longer than the verify time while the inverter
    /// formed the island (it might be closed: never form onto the grid).
    BreakerReadbackLost,
    /// The inverter did not read back grid-forming with the bus in its window in time.
    InverterDidNotForm,
    /// A black start did not bring the bus into its window in time.
    BlackStartFailed,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BreakerFailedToOpen => "grid-tie breaker failed to open",
            Self::BreakerFailedToClose => "grid-tie breaker failed to close",
            Self::BreakerClosedUnexpectedly => "grid-tie breaker closed without an EMS command",
            Self::BreakerReadbackLost => "grid-tie breaker read-back lost while islanded",
            Self::InverterDidNotForm => "inverter did not switch to grid-forming",
            Self::BlackStartFailed => "black start failed: bus not in its window",
        })
    }
}

/// Why the site is in [`GridState::Blackout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlackoutReason {
    /// Started with the breaker open, or after an operator reset.
    Idle,
    /// No discharge power available: the island cannot be held.
    NoEnergy,
    /// The inverter faulted or stopped forming.
    InverterLost,
    /// The bus stayed out of its window with every load shed.
    BusOutOfWindow,
}

impl fmt::Display for BlackoutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Idle => "idle",
            Self::NoEnergy => "no discharge power available",
            Self::InverterLost => "inverter stopped forming",
            Self::BusOutOfWindow => "island bus out of window with every load shed",
        })
    }
}

/// Why a load was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedCause {
    /// The island draws more than the shed level of the available power.
    Overload,
    /// The bus voltage or frequency sags below its window.
    BusSag,
    /// SOC below the critical-only level (or unknown).
    LowSoc,
}

/// Something the sequence did or saw (for the audit log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IslandEvent {
    /// The state changed.
    State {
        /// From.
        from: GridState,
        /// To.
        to: GridState,
    },
    /// A detector stage tripped while connected.
    GridLost(TripCause),
    /// The breaker opened without an EMS command while connected.
    BreakerOpenedExternally,
    /// Load `index` shed.
    LoadShed {
        /// Circuit index.
        index: usize,
        /// Why.
        cause: ShedCause,
    },
    /// Load `index` restored.
    LoadRestored {
        /// Circuit index.
        index: usize,
    },
    /// The relay read-back differs from the command longer than the verify time.
    RelayMismatch {
        /// Commanded.
        commanded: LoadMask,
        /// Read back.
        read: LoadMask,
    },
    /// Synchronisation did not succeed in time; the enter-service delay starts again.
    SyncFailed,
    /// A close was about to be commanded with a condition false and was refused (the final
    /// gate; it names the first false condition).
    CloseRefused(&'static str),
    /// Safe stop.
    Stopped(StopReason),
    /// Blackout.
    Blackout(BlackoutReason),
    /// Operator reset of a safe stop.
    Reset,
}

impl fmt::Display for IslandEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::State { from, to } => write!(f, "grid state {from} -> {to}"),
            Self::GridLost(c) => write!(f, "grid lost: {c}"),
            Self::BreakerOpenedExternally => f.write_str("grid-tie breaker opened externally"),
            Self::LoadShed { index, cause } => write!(f, "load {index} shed ({cause:?})"),
            Self::LoadRestored { index } => write!(f, "load {index} restored"),
            Self::RelayMismatch { commanded, read } => {
                write!(f, "load relays: commanded {commanded}, read back {read}")
            }
            Self::SyncFailed => f.write_str("synchronisation failed: no reconnection"),
            Self::CloseRefused(c) => write!(f, "breaker close refused: {c}"),
            Self::Stopped(r) => write!(f, "safe stop: {r}"),
            Self::Blackout(r) => write!(f, "blackout: {r}"),
            Self::Reset => f.write_str("safe stop reset by operator"),
        }
    }
}

/// The conditions under which the breaker may be commanded closed; all must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseConditions {
    /// The grid sample is inside the enter-service window and has been for the whole delay.
    pub grid_healthy: bool,
    /// No detector stage is tripped.
    pub no_trip: bool,
    /// The breaker reads back open (good).
    pub breaker_open: bool,
    /// The bus is dead (inverter reads off, bus voltage good and below the dead-bus level) or
    /// synchronised (Δf, ΔU, Δφ measured and within the synchro-check).
    pub synchronised: bool,
    /// Not in a safe stop and the inverter reports no fault.
    pub authorised: bool,
}

impl CloseConditions {
    /// Every condition true.
    #[must_use]
    pub const fn all(&self) -> bool {
        self.grid_healthy && self.no_trip && self.breaker_open && self.synchronised && self.authorised
    }

    /// The first false condition's name (`None` when all hold).
    #[must_use]
    pub const fn first_false(&self) -> Option<&'static str> {
        if !self.grid_healthy {
            Some("grid not in the enter-service window for the delay")
        } else if !self.no_trip {
            Some("a protection stage is tripped")
        } else if !self.breaker_open {
            Some("breaker not verified open")
        } else if !self.synchronised {
            Some("not synchronised and bus not dead")
        } else if !self.authorised {
            Some("safe stop or inverter fault")
        } else {
            None
        }
    }
}

/// Events one cycle can report.
pub const MAX_EVENTS: usize = 8;

/// The sequence's answer for one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct IslandOutput {
    /// The grid state after this cycle.
    pub state: GridState,
    /// The breaker command.
    pub breaker: BreakerCommand,
    /// The inverter command.
    pub inverter: InverterCommand,
    /// The load relays' commanded positions.
    pub loads: LoadMask,
    /// Whether the EMS set-point may move power: only when connected and grid-following.
    /// Elsewhere the inverter either forms the island (its power follows the load) or is off.
    pub setpoints_allowed: bool,
    /// The reconnection ramp: the largest |power| the EMS may command (`None`: no limit).
    pub power_limit: Option<Watts>,
    /// The close conditions as evaluated this cycle.
    pub close: CloseConditions,
    /// The detector's view of the grid side this cycle.
    pub detection: Detection,
    /// The latched safe-stop reason.
    pub stop: Option<StopReason>,
    /// What happened this cycle.
    pub events: Vec<IslandEvent, MAX_EVENTS>,
    /// Events that did not fit.
    pub events_dropped: u8,
    /// How long the grid has been inside the enter-service window.
    pub grid_healthy_for: Millis,
}
