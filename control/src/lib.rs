//! `ems-control`: control modes, mode arbitration, PID, power ramper, the final safety clamp and
//! the per-cycle [`Controller`].
//!
//! One [`Controller::step`] runs: emergency handler → safety envelope → state machine →
//! proposals (default [`ModeSetting`], plan slot [`PlanTarget`], operator/API [`Override`],
//! grid-service set-point, operator rule [`RuleTarget`]) → [`arbitrate`] by priority (grid
//! services > overrides > rules > provider schedules > plan > mode) → [`clamp::final_clamp`], the single choke point → contactors. [`Output`] says which
//! layer set the request ([`Output::source`]) and which safety constraint changed it
//! ([`Output::binding`]).
//!
//! | module | holds |
//! |---|---|
//! | [`controller`] | [`Controller`], [`ControllerConfig`], [`Inputs`], [`Output`] |
//! | [`modes`] | [`ModeSetting`], [`Mode`], [`Proposal`], [`ProposalReason`], charge-only, [`Feedback`] (what the modes' anti-windup needs of the previous cycle) |
//! | [`self_consumption`] | [`SelfConsumptionConfig`]: follow a grid set-point, SOC reserve |
//! | [`peak_shaving`] | [`PeakShavingConfig`], [`CapSlots`]: import/export caps by time slot, recharge |
//! | [`arbitration`] | [`arbitrate`], [`Override`], [`PlanTarget`], [`CommandSource`]: the priority rule and the plan execution policy |
//! | [`clamp`] | [`clamp::final_clamp`]: E-stop, state, shutdown, envelope, ramp |
//! | [`command`] | [`Command`]: the only thing the device layer accepts; built only by [`Controller::step_with`] |
//! | [`loadpoint`] | [`loadpoint::Loadpoint`]: EV charging modes `off`/`now`/`minpv`/`pv`, surplus, delays, 1p↔3p switching with dwell and interlock |
//! | [`grid_service`] | the [`GridService`] seam: replace/add requests, [`Reserve`]s, own ramp |
//! | [`proposal`] | the vocabulary of proposals and sources shared by modes, plan, arbitration and controller |
//! | [`ramp`] | [`PowerRamper`], [`RampRate`] |
//! | [`pid`] | [`pid::Pid`] with anti-windup |
//! | `tracking` (private) | the grid-following loop shared by self-consumption, peak shaving and plan slots |
//!
//! **Architecture Invariant:** this crate does no I/O, reads no clock and never allocates in
//! [`Controller::step`] (checked by `control/tests/no_alloc.rs`).
//!
//! **Architecture Invariant:** every set-point, whatever its source, reaches the devices only
//! through [`clamp::final_clamp`] (checked by `control/tests/invariant.rs`).
//!
//! **Architecture Invariant:** a device command can only be built by `Controller::step`
//! ([`Command`] has private fields and a crate-private constructor; the `compile_fail` doc tests
//! in [`command`] and `ems-devices`' `_test-access` examples enforce it).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects, clippy::wildcard_enum_match_arm)]
// Unit tests do integer arithmetic on small literal times and index fixed fixtures.
#![cfg_attr(test, allow(clippy::arithmetic_side_effects, clippy::indexing_slicing))]

pub mod arbitration;
pub mod clamp;
pub mod command;
pub mod controller;
pub mod grid_service;
pub mod loadpoint;
pub mod modes;
pub mod peak_shaving;
pub mod pid;
pub mod proposal;
pub mod ramp;
pub mod self_consumption;
mod tracking;

#[cfg(test)]
mod test_support;

pub use arbitration::{
    arbitrate, Arbitrated, Candidates, CommandSource, Override, OverrideError, OverrideKind, PlanTarget,
    ProviderOperation, ProviderTarget, RuleTarget, PLAN_GRID_TOLERANCE,
};
pub use command::{Command, CommandClass};
pub use controller::{ConfigError, Controller, ControllerConfig, GridTieBound, Inputs, Output};
pub use grid_service::{FixedRequest, GridAction, GridRequest, GridService, NoGridService, Reserve};
pub use modes::{
    ChargeOnlyConfig, ChargeSource, Feedback, Mode, ModeError, ModeSetting, Proposal, ProposalReason,
};
pub use peak_shaving::{CapSlot, CapSlots, CapSlotsFull, PeakShavingConfig, MAX_CAP_SLOTS, MINUTES_PER_DAY};
pub use ramp::{PowerRamper, RampRate};
pub use self_consumption::SelfConsumptionConfig;
