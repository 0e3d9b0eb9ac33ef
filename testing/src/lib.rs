//! `ems-testing`: whole-site verification.
//!
//! * [`harness`]: runs the real [`ems_control::Controller`] against the simulated site of
//!   `ems-devices` as fast as possible, with a seeded fault plan and an automated operator,
//!   and checks the safety invariant (design.md §6) and the hard limits on the *physical* truth
//!   of the simulator in every cycle.
//! * [`report`]: the summary (energy flows, min/max of every safety quantity, limit events,
//!   violations) as text or JSON.
//!
//! The gateway's `simulate` command and the soak tests both call [`harness::run`].
#![forbid(unsafe_code)]

pub mod checker;
pub mod economics;
pub mod faults;
pub mod faulty;
pub mod fleet;
pub mod harness;
pub mod island_scenario;
pub mod loadpoint_day;
pub mod options;
pub mod report;
pub mod scenario;
pub mod sunspec_site;

pub use harness::{
    run, run_scenario, run_scenario_file, run_timeline, ExpectationOutcome, HarnessError, ScenarioReport,
    ScenarioRunError,
};
pub use options::{Duty, RunOptions};
pub use report::Report;
pub use scenario::Scenario;
