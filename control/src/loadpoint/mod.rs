//! Loadpoints: EV charging by mode (`off`, `now`, `minpv`, `pv`, evcc's vocabulary), from PV
//! surplus with enable/disable delays, with 1p↔3p switching behind a dwell time and the
//! vehicle-capability interlock.
//!
//! | module | holds |
//! |---|---|
//! | [`types`] | [`ChargeMode`], [`VehicleStatus`], [`Phases`], [`DeciAmps`], [`LoadpointReason`], [`PhaseBlock`] |
//! | [`config`] | [`LoadpointConfig`] (defaults: 6 ..= 16 A, 1 min / 3 min, 10 min dwell, 2 min pause), its validation |
//! | [`controller`] | [`Loadpoint::step`], [`LoadpointInputs`], [`LoadpointOutput`], [`surplus`] |
//!
//! The shell reads the charger (`ems_devices::evse::SafeEvse::poll`) and the site meters, calls
//! [`Loadpoint::step`] once per cycle, and applies the output in this order: phases (only ever
//! changed while the output disables charging), enable, current limit.

pub mod config;
pub mod controller;
pub mod types;

pub use config::{Limits, LoadpointConfig, LoadpointConfigError, IEC_MIN_CURRENT};
pub use controller::{surplus, Loadpoint, LoadpointInputs, LoadpointOutput};
pub use types::{
    ChargeMode, DeciAmps, LoadpointReason, PhaseBlock, Phases, UnknownChargeMode, VehicleStatus, PHASE_VOLTS,
};
