//! `ems-safety`: safety monitoring. One call per control cycle turns the site
//! [`Snapshot`](ems_core::Snapshot) into an [`Envelope`]: how much the battery may charge and
//! discharge right now, whether the main contactor may close, which faults trip the system, and
//! the reason behind every limit.
//!
//! * [`limits`]: warn/alarm/trip levels with hysteresis, debounce and latched trips.
//! * [`trend`]: least-squares slopes predicting time to trip; runaway detection.
//! * [`interlock`]: declarative permission rules ("discharge requires contactor closed and
//!   pre-charge done").
//! * [`derating`]: piecewise-linear derating curves (temperature, cell voltage, SOC).
//! * [`monitor`]: [`SafetyConfig`] and [`SafetyMonitor`], which intersect all of the above with
//!   the inverter rating, BMS limits, grid connection limits and the worst case for
//!   unavailable signals.
//! * [`envelope`]: the monotone [`Envelope`] type.
//!
//! The crate is `no_std` unless the `std` feature is on, never allocates, never panics and
//! reads no clock: the caller passes `now`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
// Mirrors the lints the workspace is about to enable in the root `Cargo.toml`; removed from
// here once `[workspace.lints]` carries them.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects, clippy::wildcard_enum_match_arm)]

pub mod derating;
pub mod envelope;
pub mod error;
pub mod interlock;
pub mod limits;
pub mod monitor;
pub mod plausibility;
pub mod scalar;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trend;

pub use derating::{DeratingConfig, DeratingCurve};
pub use envelope::Envelope;
pub use error::ConfigError;
pub use interlock::{Condition, Interlocks, Permissions, Rule, Target};
pub use limits::{Crossing, Direction, LimitConfig, LimitMonitor, LimitSpec, PowerDirection};
pub use monitor::{evaluate_once, SafetyConfig, SafetyMonitor};
pub use plausibility::{FrozenBmsDetector, FrozenConfig};
pub use trend::{TrendAnalyzer, TrendConfig};

/// The stateless evaluation named in design.md (`ems_safety::evaluate`): see
/// [`evaluate_once`].
pub use monitor::evaluate_once as evaluate;
