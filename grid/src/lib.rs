//! `ems-grid`: layer 6, grid services — implementations of [`ems_control::GridService`].
//!
//! | module | holds |
//! |---|---|
//! | [`params`] | versioned parameter sets: [`ParamSet`] (Nordic FCR 2023 v1.0, 2025 v1.1), [`FfrParams`], [`DroopParams`] |
//! | [`fcr_n`] | [`FcrN`]: linear ±C over 49.9–50.1 Hz, with NEM/AEM |
//! | [`fcr_d`] | [`FcrD`]: up/down, 49.9→49.5 / 50.1→50.5 Hz, bounded deactivation |
//! | [`ffr`] | [`Ffr`]: step at 49.7/49.6/49.5 Hz, support, bounded deactivation, recovery, hysteresis |
//! | [`droop`] | [`Droop`]: LFSM-O/U (EN 50549-1, VDE-AR-N 4105), IEEE 1547-2018 frequency-droop |
//! | [`ler`] | limited energy reservoirs: [`LerConfig`], [`EnergyView`], endurance, NEM and AEM |
//! | [`services`] | [`FrequencyServices`]: the services a site sold as one `GridService` |
//! | [`status`] | [`ServiceStatus`], [`Activation`], [`LerStatus`], [`Response`]: what each call reports |
//! | [`error`] | [`ParamError`]: the field and the value refused |
//! | [`island`] | island detection, backup transfer, black start, resynchronisation ([`island::IslandSequencer`]) |
//! | `prequal` (feature `std`) | prequalification evidence: test signals, the test run, evaluation, the TSO log |
//!
//! Every service answers with [`ems_control::GridAction::Add`] (a Δ on top of the baseline,
//! `+` discharge) or `Idle` at a Δ of zero, and a [`ems_control::Reserve`] that narrows the
//! envelope the plan and the modes see. A stale or invalid frequency never freezes a response:
//! it falls to zero at a bounded rate and the service then returns `None`.
//!
//! **Architecture Invariant:** the services and the island supervision do no I/O, read no clock
//! and never allocate: state lives in fixed-size fields and `heapless` buffers. Only `prequal`
//! (feature `std`, the offline test tool) allocates and writes files.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects, clippy::wildcard_enum_match_arm)]
// Unit tests do integer arithmetic on small literal times and index fixed fixtures.
#![cfg_attr(test, allow(clippy::arithmetic_side_effects, clippy::indexing_slicing))]

mod continuity;
pub mod droop;
pub mod error;
pub mod fcr_d;
pub mod fcr_n;
pub mod ffr;
pub mod island;
pub mod ler;
mod math;
pub mod params;
#[cfg(feature = "std")]
pub mod prequal;
pub mod services;
pub mod status;

pub use droop::{droop_delta, Droop, DROOP_MAX_DELTA_FACTOR};
pub use error::{ParamError, ParamValue};
pub use fcr_d::{fcr_d_share, FcrD, FcrDDirection};
pub use fcr_n::{fcr_n_share, FcrN};
pub use ffr::Ffr;
pub use ler::{EnergyView, LerConfig};
pub use params::{
    DroopParams, FfrLevel, FfrParams, FfrSupport, ParamSet, PowerReference, FFR_MAX_RECOVERY,
    FFR_MAX_SHORT_DEACTIVATION, MAX_DROOP, MIN_DROOP,
};
pub use services::{add_reserves, FrequencyServices, ServicesStatus};
pub use status::{Activation, AemState, LerStatus, NemState, Response, ServiceKind, ServiceStatus};
