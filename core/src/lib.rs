//! `ems-core`: the safety infrastructure every other EMS crate stands on.
//!
//! * [`units`]: physical quantities as newtypes that reject NaN, ±inf and out-of-range values.
//! * [`measurement`]: a value with its timestamp, maximum age and quality.
//! * [`snapshot`]: the single source of truth for one control cycle (battery/BMS, inverter,
//!   grid meter, PV, contactor feedback, E-stop input).
//! * [`state`]: the five-state machine (BOOT, IDLE, RUNNING, ERROR, STOPPED) with its transition
//!   table, and [`persist`] for storing it across reboots.
//! * [`emergency`]: E-stop latching, graceful shutdown and manual reset.
//! * [`event`]: bounded, allocation-free events with reasons.
//!
//! The crate is `no_std` unless the `std` feature is on, never allocates and reads no clock:
//! every function that needs the time takes `now_ms` (a monotonic millisecond counter).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod command;
pub mod emergency;
pub mod event;
pub mod measurement;
pub mod persist;
pub mod reason;
pub mod snapshot;
pub mod state;
pub mod units;

pub use command::ContactorCommand;
pub use event::{
    Event, EventKind, EventLog, Events, GridTieLimit, Level, Quantity, Stamped, TripReason, EVENT_CAPACITY,
};
pub use measurement::{Measurement, Quality};
pub use snapshot::Snapshot;
pub use state::{State, StateMachine, TransitionError, TransitionRequest};
pub use units::{Amps, Celsius, Hertz, Millis, Percent, UnitError, Volts, WattHours, Watts};
