//! Events with reasons: the shared vocabulary every layer uses to explain a decision.
//!
//! Events are small `Copy` values collected in a bounded [`Events`] buffer per cycle, so the
//! control path never allocates. When the buffer is full, further events are counted in
//! [`Events::dropped`] instead of being lost silently.

pub use crate::reason::{Cause, Quantity, Signal, TripReason};
use crate::reason::{State, TransitionRequest};
use crate::state::Transition;
use crate::units::{Amps, Celsius, Millis, Percent, Volts, Watts};
use core::fmt;

/// Capacity of the per-cycle event buffer.
pub const EVENT_CAPACITY: usize = 24;

/// A value with its unit, for events (so no bare `f32` crosses an API).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Power.
    Power(Watts),
    /// Voltage.
    Voltage(Volts),
    /// Current.
    Current(Amps),
    /// Temperature.
    Temperature(Celsius),
    /// Percentage.
    Percent(Percent),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Power(v) => write!(f, "{v:.0}"),
            Self::Voltage(v) => write!(f, "{v:.3}"),
            Self::Current(v) => write!(f, "{v:.1}"),
            Self::Temperature(v) => write!(f, "{v:.1}"),
            Self::Percent(v) => write!(f, "{v:.1}"),
        }
    }
}

/// Severity of a limit crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Inside all limits.
    Normal,
    /// Warn level: logged, no action.
    Warn,
    /// Alarm level: power in the affected direction is derated to zero.
    Alarm,
    /// Trip level: latched, the system goes to ERROR.
    Trip,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Normal => "NORMAL",
            Self::Warn => "WARN",
            Self::Alarm => "ALARM",
            Self::Trip => "TRIP",
        })
    }
}

/// Something that bounds the power the battery may move: the reasons attached to an envelope
/// and to a clamped command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Constraint {
    /// The BMS-reported charge/discharge limit.
    BmsLimit,
    /// Inverter nameplate rating.
    InverterRating,
    /// A limit at alarm level or a latched trip for this quantity.
    Limit(Quantity),
    /// A derating curve for this quantity (temperature, cell voltage, SOC).
    Derating(Quantity),
    /// A trend predicts this quantity reaches its trip level within the horizon.
    Trend(Quantity),
    /// An interlock rule (index into the interlock rule table, see `ems-safety`).
    Interlock(u8),
    /// A signal needed for this direction is stale or invalid.
    SignalUnavailable(Signal),
    /// Grid connection import limit (main fuse / contract).
    GridImportLimit,
    /// Grid connection export limit.
    GridExportLimit,
    /// The state machine is not RUNNING.
    NotRunning,
    /// The ramp-rate limit.
    Ramp,
    /// An emergency stop is active.
    EmergencyStop,
    /// A graceful shutdown is ramping the set-point to zero.
    Shutdown,
    /// Headroom or energy reserved by a grid service (narrows what the sources below it may
    /// use; never what the grid service itself may use).
    GridServiceReserve,
    /// The grid-tie (island) sequence: the site is not connected and grid-following, or it
    /// reconnected and follows the 10 % Pn/min ramp.
    GridTie(GridTieLimit),
}

/// Why the grid-tie (island) sequence bounds the battery set-point (the control-layer
/// vocabulary of `ems-grid`'s island sequence: `ems-control` stays below `ems-grid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GridTieLimit {
    /// The breaker position is not known yet (start-up): no set-point until it reads closed.
    Unverified,
    /// The grid was lost: the breaker is being opened and the inverter switched over.
    Transferring,
    /// Islanded (also black start, resynchronisation and the close itself): the grid-forming
    /// inverter's power follows the island load, a set-point has no meaning.
    Islanded,
    /// Neither grid nor island (blackout or safe stop): the inverter is off.
    NoSupply,
    /// Reconnected: the set-point follows the 10 % Pn/min ramp after the close.
    ReconnectionRamp,
}

impl fmt::Display for GridTieLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unverified => "grid-tie breaker not yet verified closed",
            Self::Transferring => "grid lost: transferring to island",
            Self::Islanded => "islanded: grid-forming inverter follows the load",
            Self::NoSupply => "no grid and no island: inverter off",
            Self::ReconnectionRamp => "reconnection ramp (enter-service gradient)",
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BmsLimit => f.write_str("BMS limit"),
            Self::InverterRating => f.write_str("inverter rating"),
            Self::Limit(q) => write!(f, "{q} limit"),
            Self::Derating(q) => write!(f, "{q} derating"),
            Self::Trend(q) => write!(f, "{q} trend"),
            Self::Interlock(i) => write!(f, "interlock #{i}"),
            Self::SignalUnavailable(s) => write!(f, "{s} unavailable"),
            Self::GridImportLimit => f.write_str("grid import limit"),
            Self::GridExportLimit => f.write_str("grid export limit"),
            Self::NotRunning => f.write_str("not RUNNING"),
            Self::Ramp => f.write_str("ramp limit"),
            Self::EmergencyStop => f.write_str("emergency stop"),
            Self::Shutdown => f.write_str("graceful shutdown"),
            Self::GridServiceReserve => f.write_str("grid-service reserve"),
            Self::GridTie(l) => write!(f, "{l}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind {
    /// The state machine changed state.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        cause: Cause,
    },
    /// A watched quantity changed level (entered or left warn/alarm/trip).
    LimitLevel {
        /// The quantity.
        quantity: Quantity,
        /// The new level.
        level: Level,
        /// The value that caused it (`None` if the signal was unavailable).
        value: Option<Value>,
    },
    /// The trend analyzer predicts a trip level within its horizon.
    TrendWarning {
        /// The quantity.
        quantity: Quantity,
        /// Predicted time until the trip level is reached.
        time_to_trip: Millis,
    },
    /// The proposed set-point was changed by the final clamp.
    CommandLimited {
        /// What the active mode asked for.
        requested: Watts,
        /// What was commanded.
        commanded: Watts,
        /// The binding constraint.
        by: Constraint,
    },
    /// The E-stop input was pressed (edge).
    EStopPressed,
    /// The E-stop input was released (edge); a manual reset is still required.
    EStopReleased,
    /// A graceful shutdown started.
    ShutdownStarted,
    /// A graceful shutdown completed: power zero, contactors open, verified.
    ShutdownComplete,
    /// A request was refused.
    RequestRefused {
        /// The request.
        request: TransitionRequest,
        /// State at the time.
        state: State,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StateChanged { from, to, cause } => write!(f, "{from} -> {to}: {cause}"),
            Self::LimitLevel { quantity, level, value: Some(v) } => {
                write!(f, "{quantity} {level} at {v}")
            }
            Self::LimitLevel { quantity, level, value: None } => {
                write!(f, "{quantity} {level} (signal unavailable)")
            }
            Self::TrendWarning { quantity, time_to_trip } => {
                write!(f, "{quantity}: trip level predicted in {:.0} s", time_to_trip.as_secs_f32())
            }
            Self::CommandLimited { requested, commanded, by } => {
                write!(f, "command {requested:.0} limited to {commanded:.0} by {by}")
            }
            Self::EStopPressed => f.write_str("E-stop pressed"),
            Self::EStopReleased => f.write_str("E-stop released (manual reset required)"),
            Self::ShutdownStarted => f.write_str("graceful shutdown started"),
            Self::ShutdownComplete => f.write_str("graceful shutdown complete"),
            Self::RequestRefused { request, state } => {
                write!(f, "request {request} refused in {state}")
            }
        }
    }
}

/// One event with its monotonic time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// When (monotonic ms of the cycle that produced it).
    pub at: Millis,
    /// What.
    pub kind: EventKind,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.at, self.kind)
    }
}

/// An event that carries its time: what an [`EventLog`] stores. Implemented by [`Event`] here
/// and by the device layer's timed events, so both share one bounded buffer.
pub trait Stamped: Sized {
    /// What happened, without the time.
    type Kind;
    /// Put `kind` together with its time.
    fn stamp(at: Millis, kind: Self::Kind) -> Self;
    /// What happened.
    fn kind(&self) -> &Self::Kind;
}

impl Stamped for Event {
    type Kind = EventKind;
    fn stamp(at: Millis, kind: EventKind) -> Self {
        Self { at, kind }
    }
    fn kind(&self) -> &EventKind {
        &self.kind
    }
}

impl Transition {
    /// As an event at `at`.
    #[must_use]
    pub const fn event(self, at: Millis) -> Event {
        Event { at, kind: EventKind::StateChanged { from: self.from, to: self.to, cause: self.cause } }
    }
}

/// A bounded, allocation-free event buffer. Overflow is counted, not silent.
#[derive(Debug, Clone)]
pub struct EventLog<T, const N: usize> {
    items: heapless::Vec<T, N>,
    dropped: u16,
}

/// The controller's per-cycle events.
pub type Events = EventLog<Event, EVENT_CAPACITY>;

impl<T, const N: usize> Default for EventLog<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> EventLog<T, N> {
    /// An empty buffer.
    #[must_use]
    pub const fn new() -> Self {
        Self { items: heapless::Vec::new(), dropped: 0 }
    }

    /// Remove all events and reset the dropped count.
    pub fn clear(&mut self) {
        self.items.clear();
        self.dropped = 0;
    }

    /// The events in order.
    #[must_use]
    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    /// Events that did not fit.
    #[must_use]
    pub const fn dropped(&self) -> u16 {
        self.dropped
    }

    /// Number of stored events.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Iterate.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<T: Stamped, const N: usize> EventLog<T, N> {
    /// Add an event; if full, count it as dropped.
    pub fn push(&mut self, at: Millis, kind: T::Kind) {
        if self.items.push(T::stamp(at, kind)).is_err() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Whether any stored event matches `pred`.
    pub fn any(&self, pred: impl Fn(&T::Kind) -> bool) -> bool {
        self.items.iter().any(|e| pred(e.kind()))
    }
}

impl<'a, T, const N: usize> IntoIterator for &'a EventLog<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_counted() {
        let mut e = Events::new();
        for _ in 0..EVENT_CAPACITY + 3 {
            e.push(Millis::ZERO, EventKind::EStopPressed);
        }
        assert_eq!(e.len(), EVENT_CAPACITY);
        assert_eq!(e.dropped(), 3);
        e.clear();
        assert!(e.is_empty());
        assert_eq!(e.dropped(), 0);
    }

    #[test]
    fn display_speaks_operator_language() {
        let k = EventKind::LimitLevel {
            quantity: Quantity::CellTempHigh,
            level: Level::Trip,
            value: Some(Value::Temperature(crate::celsius!(58.24))),
        };
        assert_eq!(k.to_string(), "Cell over-temperature TRIP at 58.2 °C");
        for (i, q) in Quantity::ALL.iter().enumerate() {
            assert_eq!(q.index(), i);
        }
    }
}
