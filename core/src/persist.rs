//! Persisting the state machine across reboots.
//!
//! The format is one short ASCII line, written and parsed here so that `no_std` targets can
//! store it in flash and the gateway in a file:
//!
//! ```text
//! ems-state v1 STOPPED L2,B6,I
//! ```
//!
//! Fault codes: `L<q>` limit trip, `R<q>` runaway (q = index in `Quantity::ALL`), `B<a>` BMS
//! alarm (index in `BmsAlarm::ALL`), `S<s>` signal lost (index in `Signal::ALL`), `I` inverter
//! fault, `C` contactor mismatch, `D` shutdown failed, `N` set-point not applied, `P` pre-charge
//! failed, `W` contactor welded, `F` contactor failed to close. A store that cannot parse what it finds
//! reports [`DecodeError`] naming the field; the caller then keeps the safe default (STOPPED),
//! never RUNNING.

use crate::event::{Quantity, Signal, TripReason};
use crate::reason::Cause;
use crate::snapshot::BmsAlarm;
use crate::state::{State, StateMachine, Transition, MAX_LATCHED};
use core::fmt::Write as _;

/// Maximum encoded length in bytes.
pub const ENCODED_CAPACITY: usize = 128;

const MAGIC: &str = "ems-state";
const VERSION: &str = "v1";

/// What survives a reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedState {
    /// The state at the time of saving.
    pub state: State,
    /// Latched faults.
    pub latched: heapless::Vec<TripReason, MAX_LATCHED>,
}

/// A persisted line that could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header is not `ems-state v1`.
    #[error("persisted state: header is not '{MAGIC} {VERSION}'")]
    Header,
    /// The state name is unknown.
    #[error("persisted state: field 'state' is not one of BOOT, IDLE, RUNNING, ERROR, STOPPED")]
    State,
    /// A fault code is unknown.
    #[error("persisted state: field 'faults' has an unknown code at position {0}")]
    Fault(usize),
    /// More faults than fit.
    #[error("persisted state: field 'faults' has more than {MAX_LATCHED} entries")]
    TooManyFaults,
}

/// Where the state machine is stored. The gateway's implementation writes atomically (temp
/// file, fsync, rename); [`MemoryStore`] serves tests and targets without storage.
pub trait StateStore {
    /// The store's own error.
    type Error: core::fmt::Debug + core::fmt::Display;
    /// Load the last saved state, `Ok(None)` if nothing was ever saved.
    ///
    /// # Errors
    /// The store's own error when the saved state cannot be read or decoded.
    fn load(&mut self) -> Result<Option<PersistedState>, Self::Error>;
    /// Save atomically: after a crash either the old or the new state is found, never a mix.
    ///
    /// # Errors
    /// The store's own error when the state cannot be written; the old state then stays.
    fn save(&mut self, state: &PersistedState) -> Result<(), Self::Error>;
}

/// An in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    saved: Option<PersistedState>,
}

impl StateStore for MemoryStore {
    type Error = core::convert::Infallible;
    fn load(&mut self) -> Result<Option<PersistedState>, Self::Error> {
        Ok(self.saved.clone())
    }
    fn save(&mut self, state: &PersistedState) -> Result<(), Self::Error> {
        self.saved = Some(state.clone());
        Ok(())
    }
}

fn index_of<T: PartialEq + Copy>(all: &[T], v: T) -> usize {
    all.iter().position(|x| *x == v).unwrap_or(usize::MAX)
}

impl PersistedState {
    /// Encode as one line (without a trailing newline).
    #[must_use]
    pub fn encode(&self) -> heapless::String<ENCODED_CAPACITY> {
        let mut out = heapless::String::new();
        // Capacity covers the header plus MAX_LATCHED codes of at most 3 characters each, so
        // the writes cannot fail; a failure would only truncate the diagnostic list.
        let _ = write!(out, "{MAGIC} {VERSION} {}", self.state);
        for (i, r) in self.latched.iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ',' };
            let _ = match r {
                TripReason::Limit(q) => write!(out, "{sep}L{}", q.index()),
                TripReason::Runaway(q) => write!(out, "{sep}R{}", q.index()),
                TripReason::Bms(a) => write!(out, "{sep}B{}", index_of(&BmsAlarm::ALL, *a)),
                TripReason::SignalLost(s) => write!(out, "{sep}S{}", index_of(&Signal::ALL, *s)),
                TripReason::InverterFault => write!(out, "{sep}I"),
                TripReason::ContactorMismatch => write!(out, "{sep}C"),
                TripReason::ShutdownFailed => write!(out, "{sep}D"),
                TripReason::SetpointNotApplied => write!(out, "{sep}N"),
                TripReason::PrechargeFailed => write!(out, "{sep}P"),
                TripReason::ContactorWelded => write!(out, "{sep}W"),
                TripReason::ContactorFailedToClose => write!(out, "{sep}F"),
            };
        }
        out
    }

    /// Parse a line written by [`Self::encode`].
    ///
    /// # Errors
    /// [`DecodeError`] naming what is malformed (unknown state, unknown fault, bad format).
    pub fn decode(line: &str) -> Result<Self, DecodeError> {
        let mut parts = line.trim().split(' ');
        if parts.next() != Some(MAGIC) || parts.next() != Some(VERSION) {
            return Err(DecodeError::Header);
        }
        let state = parts.next().and_then(State::from_name).ok_or(DecodeError::State)?;
        let mut latched = heapless::Vec::new();
        if let Some(codes) = parts.next() {
            for (pos, code) in codes.split(',').enumerate() {
                let reason = parse_code(code).ok_or(DecodeError::Fault(pos))?;
                latched.push(reason).map_err(|_| DecodeError::TooManyFaults)?;
            }
        }
        if parts.next().is_some() {
            return Err(DecodeError::Fault(latched.len()));
        }
        Ok(Self { state, latched })
    }
}

fn parse_code(code: &str) -> Option<TripReason> {
    let mut chars = code.chars();
    let kind = chars.next()?;
    let rest = chars.as_str();
    let idx = || rest.parse::<usize>().ok();
    match kind {
        'L' => Quantity::ALL.get(idx()?).map(|q| TripReason::Limit(*q)),
        'R' => Quantity::ALL.get(idx()?).map(|q| TripReason::Runaway(*q)),
        'B' => BmsAlarm::ALL.get(idx()?).map(|a| TripReason::Bms(*a)),
        'S' => Signal::ALL.get(idx()?).map(|s| TripReason::SignalLost(*s)),
        'I' if rest.is_empty() => Some(TripReason::InverterFault),
        'C' if rest.is_empty() => Some(TripReason::ContactorMismatch),
        'D' if rest.is_empty() => Some(TripReason::ShutdownFailed),
        'N' if rest.is_empty() => Some(TripReason::SetpointNotApplied),
        'P' if rest.is_empty() => Some(TripReason::PrechargeFailed),
        'W' if rest.is_empty() => Some(TripReason::ContactorWelded),
        'F' if rest.is_empty() => Some(TripReason::ContactorFailedToClose),
        _ => None,
    }
}

/// Persistence of the state machine (here, so that the machine does not import its own store).
impl StateMachine {
    /// Restore from persisted state. STOPPED and ERROR (with their latched faults) survive a
    /// reboot; any other persisted state starts in BOOT, because a reboot must not resume
    /// acting without the boot self-checks.
    #[must_use]
    pub fn restore(persisted: &PersistedState) -> (Self, Option<Transition>) {
        let mut sm = Self::new();
        match persisted.state {
            State::Stopped | State::Error => {
                for r in &persisted.latched {
                    sm.latch(*r);
                }
                sm.set_restored(persisted.state);
                let t = Transition { from: State::Boot, to: persisted.state, cause: Cause::Restored };
                (sm, Some(t))
            }
            State::Boot | State::Idle | State::Running => (sm, None),
        }
    }

    /// The state to persist.
    #[must_use]
    pub fn persisted(&self) -> PersistedState {
        PersistedState { state: self.state(), latched: self.latched().iter().copied().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_reason() {
        let mut latched = heapless::Vec::new();
        for r in [
            TripReason::Limit(Quantity::GridExport),
            TripReason::Runaway(Quantity::CellTempHigh),
            TripReason::Bms(BmsAlarm::Internal),
            TripReason::SignalLost(Signal::EStop),
            TripReason::InverterFault,
            TripReason::ContactorMismatch,
            TripReason::ShutdownFailed,
            TripReason::SetpointNotApplied,
            TripReason::PrechargeFailed,
        ] {
            latched.push(r).unwrap();
        }
        let p = PersistedState { state: State::Stopped, latched };
        let line = p.encode();
        assert_eq!(PersistedState::decode(&line), Ok(p));
    }

    #[test]
    fn empty_faults_round_trip() {
        let p = PersistedState { state: State::Idle, latched: heapless::Vec::new() };
        assert_eq!(p.encode().as_str(), "ems-state v1 IDLE");
        assert_eq!(PersistedState::decode("ems-state v1 IDLE\n"), Ok(p));
    }

    #[test]
    fn garbage_is_refused_naming_the_field() {
        assert_eq!(PersistedState::decode("hello"), Err(DecodeError::Header));
        assert_eq!(PersistedState::decode("ems-state v1 PARK"), Err(DecodeError::State));
        assert_eq!(PersistedState::decode("ems-state v1 ERROR L2,X9"), Err(DecodeError::Fault(1)));
        assert_eq!(PersistedState::decode("ems-state v1 ERROR L99"), Err(DecodeError::Fault(0)));
        assert!(DecodeError::State.to_string().contains("'state'"));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,80}") {
            let _ = PersistedState::decode(&s);
        }
    }
}
