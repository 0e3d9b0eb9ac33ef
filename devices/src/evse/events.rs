//! EVSE events in the operator's language (from the safety wrapper and the OCPP central system),
//! and a bounded buffer for them.

use super::types::{DeciAmps, EvseStatus};
use crate::traits::ErrorKind;
use core::fmt;
use ems_core::{Amps, Millis, Watts};
use std::collections::VecDeque;

/// What bounded a commanded current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvseClampedBy {
    /// The effective maximum (site fuse, circuit, configured or rated maximum).
    Maximum,
    /// Below the minimum charging current: the command becomes 0 A (never rounded up).
    BelowMinimum,
}

/// One EVSE event.
#[derive(Debug, Clone, PartialEq)]
pub enum EvseEvent {
    /// A command was clamped.
    Clamped {
        /// Requested.
        requested: DeciAmps,
        /// Written.
        written: DeciAmps,
        /// Why.
        by: EvseClampedBy,
    },
    /// A raise was not written because the write budget or minimum interval refused it.
    WriteSkipped {
        /// Requested.
        requested: DeciAmps,
        /// The value the device keeps.
        kept: DeciAmps,
    },
    /// A write failed.
    WriteFailed {
        /// Error kind.
        kind: ErrorKind,
    },
    /// No command renewed the lease in time: the fallback current was written.
    LeaseExpired {
        /// The fallback current.
        fallback: DeciAmps,
    },
    /// No good read for longer than the verification window.
    CommLost {
        /// Time since the last good read.
        after: Millis,
    },
    /// A good read after a loss.
    CommRestored,
    /// The device reads back another limit than the one written.
    LimitNotApplied {
        /// Written.
        commanded: DeciAmps,
        /// Read back.
        read_back: DeciAmps,
    },
    /// 0 A commanded, but the vehicle keeps drawing current.
    ZeroIgnored {
        /// The largest phase current measured.
        measured: Amps,
    },
    /// The vehicle draws more than the commanded limit.
    OverCurrent {
        /// Commanded.
        commanded: DeciAmps,
        /// The largest phase current measured.
        measured: Amps,
    },
    /// The charger was disabled because it did not obey its limit.
    DisabledAfterFault,
    /// An OCPP charge point connected (WebSocket accepted with `ocpp1.6`).
    OcppConnected {
        /// Charge point id (from the URL path).
        id: String,
    },
    /// An OCPP charge point's BootNotification was accepted.
    OcppBooted {
        /// Charge point id.
        id: String,
        /// Vendor from the BootNotification.
        vendor: String,
        /// Model from the BootNotification.
        model: String,
    },
    /// An OCPP charge point went offline (link closed or silent); its fallback profile applies.
    OcppOffline {
        /// Charge point id.
        id: String,
        /// Why (closed by the charge point, link error, silent, replaced, disconnected).
        reason: String,
    },
    /// A connection was refused or closed for misbehaviour (wrong path or subprotocol, frame too
    /// large, message flood, too many malformed messages, too many charge points).
    OcppRefused {
        /// Charge point id, if known.
        id: String,
        /// Why.
        reason: String,
    },
    /// A charge point sent a malformed or unknown message; a CALLERROR was sent back.
    OcppCallError {
        /// Charge point id.
        id: String,
        /// OCPP error code sent (`FormationViolation`, `NotImplemented`, …).
        code: &'static str,
    },
    /// The connector status changed (StatusNotification).
    OcppStatus {
        /// Charge point id.
        id: String,
        /// The new status.
        status: EvseStatus,
    },
    /// A transaction started.
    OcppTransactionStarted {
        /// Charge point id.
        id: String,
        /// The transaction id assigned.
        transaction: i32,
    },
    /// A transaction stopped.
    OcppTransactionStopped {
        /// Charge point id.
        id: String,
        /// The transaction id.
        transaction: i32,
    },
    /// GetCompositeSchedule reports another limit than the profile set (or none).
    OcppProfileNotApplied {
        /// Charge point id.
        id: String,
        /// Commanded limit.
        commanded: DeciAmps,
        /// Limit in the composite schedule (`None`: no schedule or an error).
        reported: Option<DeciAmps>,
    },
    /// 0 A is in force, but meter values still show charging power.
    OcppZeroIgnored {
        /// Charge point id.
        id: String,
        /// The power in the meter values.
        power: Watts,
    },
}

impl fmt::Display for EvseClampedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Maximum => "the circuit maximum",
            Self::BelowMinimum => "the minimum charging current (stop)",
        })
    }
}

impl fmt::Display for EvseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clamped { requested, written, by } => {
                write!(f, "EV charger current {requested} clamped to {written} by {by}")
            }
            Self::WriteSkipped { requested, kept } => {
                write!(f, "EV charger current {requested} not written (write budget); keeps {kept}")
            }
            Self::WriteFailed { kind } => write!(f, "EV charger write failed: {kind}"),
            Self::LeaseExpired { fallback } => {
                write!(f, "EV charger command not renewed: fallback current {fallback} written")
            }
            Self::CommLost { after } => {
                write!(f, "EV charger communication lost for {:.1} s", after.as_secs_f32())
            }
            Self::CommRestored => f.write_str("EV charger communication restored"),
            Self::LimitNotApplied { commanded, read_back } => {
                write!(f, "EV charger did not apply the limit: commanded {commanded}, reads back {read_back}")
            }
            Self::ZeroIgnored { measured } => {
                write!(f, "EV charger ignores 0 A: vehicle still draws {measured:.1}")
            }
            Self::OverCurrent { commanded, measured } => {
                write!(f, "EV charger over-current: commanded {commanded}, vehicle draws {measured:.1}")
            }
            Self::DisabledAfterFault => f.write_str("EV charger disabled: it did not obey its current limit"),
            Self::OcppConnected { id } => write!(f, "OCPP charge point {id} connected"),
            Self::OcppBooted { id, vendor, model } => {
                write!(f, "OCPP charge point {id} booted ({vendor} {model})")
            }
            Self::OcppOffline { id, reason } => {
                write!(f, "OCPP charge point {id} offline ({reason}): its fallback profile applies")
            }
            Self::OcppRefused { id, reason } => write!(f, "OCPP charge point {id} refused: {reason}"),
            Self::OcppCallError { id, code } => {
                write!(f, "OCPP charge point {id} sent a bad message: {code}")
            }
            Self::OcppStatus { id, status } => write!(f, "OCPP charge point {id} is {status}"),
            Self::OcppTransactionStarted { id, transaction } => {
                write!(f, "OCPP charge point {id} started transaction {transaction}")
            }
            Self::OcppTransactionStopped { id, transaction } => {
                write!(f, "OCPP charge point {id} stopped transaction {transaction}")
            }
            Self::OcppProfileNotApplied { id, commanded, reported: Some(r) } => {
                write!(f, "OCPP charge point {id} did not apply the profile: commanded {commanded}, schedule says {r}")
            }
            Self::OcppProfileNotApplied { id, commanded, reported: None } => {
                write!(
                    f,
                    "OCPP charge point {id} did not apply the profile: commanded {commanded}, no schedule"
                )
            }
            Self::OcppZeroIgnored { id, power } => {
                write!(f, "OCPP charge point {id} ignores 0 A: meter values show {power:.0}")
            }
        }
    }
}

/// How many events an [`EvseEventLog`] keeps.
pub const EVSE_EVENT_CAPACITY: usize = 256;

/// A bounded buffer of timestamped EVSE events; when full, the oldest is dropped and counted.
#[derive(Debug, Clone, Default)]
pub struct EvseEventLog {
    events: VecDeque<(Millis, EvseEvent)>,
    dropped: u64,
}

impl EvseEventLog {
    /// Record an event.
    pub fn push(&mut self, at: Millis, event: EvseEvent) {
        if self.events.len() >= EVSE_EVENT_CAPACITY {
            self.events.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.events.push_back((at, event));
    }

    /// Take every buffered event, oldest first.
    pub fn drain(&mut self) -> Vec<(Millis, EvseEvent)> {
        self.events.drain(..).collect()
    }

    /// Events dropped because the buffer was full.
    #[must_use]
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }
}
