//! `ems-control`: control modes, PID, power ramper, the final safety clamp and the per-cycle
//! [`Controller`].
//!
//! **Architecture Invariant:** this crate does no I/O, reads no clock and never allocates in
//! [`Controller::step`] (checked by `control/tests/no_alloc.rs`).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod clamp;
pub mod controller;
pub mod modes;
pub mod pid;
pub mod ramp;

pub use controller::{ConfigError, Controller, ControllerConfig, Inputs, Output};
pub use modes::{ChargeOnlyConfig, ChargeSource, Mode, ModeSetting, Proposal, ProposalReason};
pub use ramp::{PowerRamper, RampRate};
