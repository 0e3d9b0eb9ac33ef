//! Prequalification evidence (issue #13 item 4), `std` only: it allocates and does file-sized
//! work offline, never in the control path.
//!
//! | module | holds |
//! |---|---|
//! | [`signal`] | the test-signal generator: the Nordic FCR test program's sequences and the FFR tests by name |
//! | [`profile`] | a `time_s,frequency_hz` CSV profile, interpolated; errors name line, column and value |
//! | [`sim`] | the simulated unit: meter (filter, noise), inverter (dead time, ramp), battery |
//! | [`run`] | a run through the real `Controller::step_with` with the service under test |
//! | [`transfer`] | the transfer function from a sine test, the Nordic stability and performance criteria |
//! | [`evaluate`] | every requirement as a [`Check`] with value, limit and margin |
//! | [`svk`] | the TSO's compliance-log CSV ([`SvkLogWriter`]) and its sanity check |
//! | [`oplog`] | the compliance log in operation: 1 Hz, 10 Hz around an FFR activation, daily files kept 14 days, the sanity check |
//!
//! `ems-gateway grid-test` is the command-line front end (`docs/GRID.md`).

pub mod evaluate;
pub mod oplog;
pub mod profile;
pub mod run;
pub mod signal;
pub mod sim;
pub mod svk;
pub mod transfer;

pub use evaluate::{evaluate, Check, Report};
pub use oplog::{OpSample, OperationRecorder, Sanity, SvkFiles};
pub use profile::{Profile, ProfileError};
pub use run::{run, Run, RunConfig, RunError, Sample, Signal};
pub use signal::{builtin, names, Sequence, SequenceKind, ServiceUnderTest};
pub use sim::UnitModel;
pub use svk::{format_datetime, nem_aem_codes, SvkLogWriter, SvkRow, SvkService, SvkServiceRow};
pub use transfer::{Complex, SystemParams, Verdict};
