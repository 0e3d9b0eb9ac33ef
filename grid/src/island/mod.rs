//! Island detection, backup transfer, black start and reconnection (issue #13 item 6).
//!
//! **Supervisory, beside the certified interface-protection relay, never instead of it.** The
//! relay trips on its own; this module decides *when and how* the site islands, restores its
//! loads, black-starts and reconnects, and it is the **sole close authority** over the grid-tie
//! breaker and a secondary trip authority.
//!
//! | module | holds |
//! |---|---|
//! | [`settings`] | [`IslandSettings`] with the defaults of EN 50549-1:2019 / VDE-AR-N 4105:2018 / IEEE 1547-2018 and their sources, [`Degrees`], [`SettingsError`] |
//! | [`detect`] | [`IslandDetector`] (U<, U<<, U>>, U> 10-min mean, f<, f>, RoCoF over a window), [`EnterServiceMonitor`] |
//! | [`loads`] | [`LoadCircuit`], [`LoadMask`], [`LoadTable`]: priorities, restore and shed order |
//! | [`types`] | inputs, commands, [`GridState`], reasons, events, [`CloseConditions`], [`IslandOutput`] |
//! | [`sequence`] | [`IslandSequencer`]: the grid↔island state machine with its close gate |
//!
//! `no_std`, allocation-free, no clock, no I/O: [`IslandSequencer::step`] takes `now` and the
//! cycle's [`IslandInputs`] and answers with commands for the breaker, the inverter mode and
//! the load relays.
//!
//! **Architecture Invariant:** the breaker is never commanded closed while any
//! [`CloseConditions`] field is false (`grid/tests/island_close_gate.rs`, proptest with an
//! independent oracle).

pub mod detect;
pub mod loads;
pub mod sequence;
pub mod settings;
pub mod types;

pub use detect::{Detection, EnterServiceMonitor, IslandDetector, TripCause};
pub use loads::{LoadCircuit, LoadMask, LoadTable, MAX_LOADS};
pub use sequence::IslandSequencer;
pub use settings::{
    BusWindow, Degrees, EnterService, FrequencyStage, IslandSettings, ProtectionSettings, RocofStage,
    SequenceSettings, SettingValue, SettingsError, SyncCheck, VoltageStage,
};
pub use types::{
    BlackoutReason, BreakerCommand, CloseConditions, GridState, InverterCommand, InverterMode, IslandEvent,
    IslandInputs, IslandOutput, ShedCause, Side, StopReason,
};
