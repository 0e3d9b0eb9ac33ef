//! The five-state machine: BOOT, IDLE, RUNNING, ERROR, STOPPED.
//!
//! Transitions are an explicit table ([`StateMachine::table`]); a request that is not valid in
//! the current state is refused with a typed [`TransitionError`]. Trips and the E-stop are not
//! requests: they are forced transitions ([`StateMachine::trip`], [`StateMachine::emergency_stop`])
//! that are valid from any state.
//!
//! | from \ request | BootComplete | Start | Stop | Acknowledge | Reset |
//! |---|---|---|---|---|---|
//! | BOOT | IDLE | – | – | – | – |
//! | IDLE | – | RUNNING | – | – | – |
//! | RUNNING | – | – | IDLE | – | – |
//! | ERROR | – | – | – | IDLE (fault gone) | – |
//! | STOPPED | – | – | – | – | IDLE (E-stop released; ERROR if faults are latched) |
//!
//! Any state → ERROR on a trip (STOPPED stays STOPPED but latches the fault, so the reset leads
//! to ERROR); any state → STOPPED on an E-stop.

use crate::reason::{Cause, TripReason};
pub use crate::reason::{State, TransitionRequest};

/// Maximum number of distinct latched faults kept.
pub const MAX_LATCHED: usize = 12;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The request is not in the transition table for this state.
    #[error("request '{request}' is not valid in state {state}")]
    NotAllowed {
        /// Current state.
        state: State,
        /// The refused request.
        request: TransitionRequest,
    },
    /// Acknowledge while a fault is still present.
    #[error("cannot acknowledge: fault still active ({0})")]
    FaultStillActive(TripReason),
    /// Reset while the E-stop input is pressed or unknown.
    #[error("cannot reset: E-stop input is pressed or unknown")]
    EStopStillPressed,
    /// Reset without an operator reason.
    #[error("a manual reset needs an operator reason")]
    MissingReason,
}

/// Facts the guards of the transition table need, supplied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Guards {
    /// A fault condition that is still present right now, if any.
    pub active_fault: Option<TripReason>,
    /// The E-stop input reads released (good quality).
    pub estop_released: bool,
}

/// A transition that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub cause: Cause,
}

/// The state machine with its latched faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    state: State,
    latched: heapless::Vec<TripReason, MAX_LATCHED>,
    overflowed: bool,
}

impl Default for StateMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl StateMachine {
    /// A fresh machine in BOOT.
    #[must_use]
    pub const fn new() -> Self {
        Self { state: State::Boot, latched: heapless::Vec::new(), overflowed: false }
    }

    /// The current state.
    #[must_use]
    pub const fn state(&self) -> State {
        self.state
    }

    /// Latched faults (oldest first).
    #[must_use]
    pub fn latched(&self) -> &[TripReason] {
        &self.latched
    }

    /// The transition table: where `request` leads from `state`, ignoring guards.
    #[must_use]
    pub const fn table(state: State, request: TransitionRequest) -> Option<State> {
        use State as S;
        use TransitionRequest as R;
        match (state, request) {
            (S::Boot, R::BootComplete) => Some(S::Idle),
            (S::Idle, R::Start) => Some(S::Running),
            (S::Running, R::Stop) => Some(S::Idle),
            (S::Error, R::Acknowledge) => Some(S::Idle),
            (S::Stopped, R::Reset) => Some(S::Idle),
            (S::Boot, R::Start | R::Stop | R::Acknowledge | R::Reset)
            | (S::Idle, R::BootComplete | R::Stop | R::Acknowledge | R::Reset)
            | (S::Running, R::BootComplete | R::Start | R::Acknowledge | R::Reset)
            | (S::Error, R::BootComplete | R::Start | R::Stop | R::Reset)
            | (S::Stopped, R::BootComplete | R::Start | R::Stop | R::Acknowledge) => None,
        }
    }

    /// Apply a request. `guards` supplies the current fault and E-stop facts.
    ///
    /// # Errors
    /// [`TransitionError`] when the request is not valid in the current state or a guard (an active fault, a pressed E-stop) forbids it.
    pub fn request(
        &mut self,
        request: TransitionRequest,
        guards: Guards,
    ) -> Result<Transition, TransitionError> {
        let Some(mut to) = Self::table(self.state, request) else {
            return Err(TransitionError::NotAllowed { state: self.state, request });
        };
        match request {
            TransitionRequest::Acknowledge => {
                if let Some(f) = guards.active_fault {
                    return Err(TransitionError::FaultStillActive(f));
                }
                self.latched.clear();
                self.overflowed = false;
            }
            TransitionRequest::Reset => {
                if !guards.estop_released {
                    return Err(TransitionError::EStopStillPressed);
                }
                if !self.latched.is_empty() || guards.active_fault.is_some() {
                    to = State::Error;
                    if let Some(f) = guards.active_fault {
                        self.latch(f);
                    }
                }
            }
            TransitionRequest::Start => {
                if let Some(f) = guards.active_fault {
                    return Err(TransitionError::FaultStillActive(f));
                }
            }
            TransitionRequest::BootComplete | TransitionRequest::Stop => {}
        }
        Ok(self.go(to, Cause::Request(request)))
    }

    /// A trip: latch `reason` and go to ERROR (from STOPPED the state stays STOPPED; the fault
    /// is latched so a reset leads to ERROR). Returns the transition if the state changed.
    pub fn trip(&mut self, reason: TripReason) -> Option<Transition> {
        self.latch(reason);
        match self.state {
            State::Boot | State::Idle | State::Running => Some(self.go(State::Error, Cause::Trip(reason))),
            State::Error | State::Stopped => None,
        }
    }

    /// An emergency stop from any state. Returns the transition if the state changed.
    pub fn emergency_stop(&mut self) -> Option<Transition> {
        match self.state {
            State::Stopped => None,
            State::Boot | State::Idle | State::Running | State::Error => {
                Some(self.go(State::Stopped, Cause::EStop))
            }
        }
    }

    /// Whether more distinct faults occurred than could be stored.
    #[must_use]
    pub const fn latch_overflowed(&self) -> bool {
        self.overflowed
    }

    /// Enter a persisted state at boot (no transition checks: the persisted state was reached
    /// through the table before the reboot).
    pub(crate) fn set_restored(&mut self, state: State) {
        self.state = state;
    }

    pub(crate) fn latch(&mut self, reason: TripReason) {
        if !self.latched.contains(&reason) && self.latched.push(reason).is_err() {
            self.overflowed = true;
        }
    }

    fn go(&mut self, to: State, cause: Cause) -> Transition {
        let t = Transition { from: self.state, to, cause };
        self.state = to;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Quantity;

    const OK: Guards = Guards { active_fault: None, estop_released: true };

    fn at(state: State) -> StateMachine {
        let mut sm = StateMachine::new();
        sm.state = state;
        sm
    }

    #[test]
    fn table_is_exactly_the_documented_one() {
        use State as S;
        use TransitionRequest as R;
        let expected = [
            (S::Boot, R::BootComplete, S::Idle),
            (S::Idle, R::Start, S::Running),
            (S::Running, R::Stop, S::Idle),
            (S::Error, R::Acknowledge, S::Idle),
            (S::Stopped, R::Reset, S::Idle),
        ];
        let reqs = [R::BootComplete, R::Start, R::Stop, R::Acknowledge, R::Reset];
        for s in State::ALL {
            for r in reqs {
                let want = expected.iter().find(|(f, q, _)| *f == s && *q == r).map(|e| e.2);
                assert_eq!(StateMachine::table(s, r), want, "{s} + {r}");
            }
        }
    }

    #[test]
    fn invalid_requests_are_refused_with_a_typed_error() {
        let mut sm = StateMachine::new();
        let err = sm.request(TransitionRequest::Start, OK).unwrap_err();
        assert_eq!(
            err,
            TransitionError::NotAllowed { state: State::Boot, request: TransitionRequest::Start }
        );
        assert_eq!(sm.state(), State::Boot);
        assert_eq!(err.to_string(), "request 'start' is not valid in state BOOT");
    }

    #[test]
    fn normal_lifecycle() {
        let mut sm = StateMachine::new();
        assert_eq!(sm.request(TransitionRequest::BootComplete, OK).unwrap().to, State::Idle);
        assert_eq!(sm.request(TransitionRequest::Start, OK).unwrap().to, State::Running);
        assert!(sm.state().may_act());
        assert_eq!(sm.request(TransitionRequest::Stop, OK).unwrap().to, State::Idle);
    }

    #[test]
    fn trip_from_any_state_goes_to_error_and_latches() {
        for s in [State::Boot, State::Idle, State::Running] {
            let mut sm = at(s);
            let t = sm.trip(TripReason::Limit(Quantity::CellTempHigh)).unwrap();
            assert_eq!((t.from, t.to), (s, State::Error));
            assert_eq!(sm.latched(), &[TripReason::Limit(Quantity::CellTempHigh)]);
        }
        let mut sm = at(State::Stopped);
        assert!(sm.trip(TripReason::InverterFault).is_none());
        assert_eq!(sm.state(), State::Stopped);
    }

    #[test]
    fn acknowledge_needs_the_fault_gone() {
        let mut sm = at(State::Running);
        sm.trip(TripReason::InverterFault);
        let busy = Guards { active_fault: Some(TripReason::InverterFault), estop_released: true };
        assert_eq!(
            sm.request(TransitionRequest::Acknowledge, busy),
            Err(TransitionError::FaultStillActive(TripReason::InverterFault))
        );
        assert_eq!(sm.request(TransitionRequest::Acknowledge, OK).unwrap().to, State::Idle);
        assert!(sm.latched().is_empty());
    }

    #[test]
    fn estop_from_any_state_and_reset_only_when_released() {
        for s in State::ALL {
            let mut sm = at(s);
            sm.emergency_stop();
            assert_eq!(sm.state(), State::Stopped);
        }
        let mut sm = at(State::Stopped);
        let pressed = Guards { active_fault: None, estop_released: false };
        assert_eq!(sm.request(TransitionRequest::Reset, pressed), Err(TransitionError::EStopStillPressed));
        assert_eq!(sm.request(TransitionRequest::Reset, OK).unwrap().to, State::Idle);
    }

    #[test]
    fn reset_with_latched_fault_goes_to_error() {
        let mut sm = at(State::Stopped);
        sm.trip(TripReason::ContactorMismatch);
        assert_eq!(sm.request(TransitionRequest::Reset, OK).unwrap().to, State::Error);
    }

    #[test]
    fn restore_keeps_stopped_and_error_only() {
        let mut sm = at(State::Running);
        sm.trip(TripReason::InverterFault);
        let (back, t) = StateMachine::restore(&sm.persisted());
        assert_eq!(back.state(), State::Error);
        assert_eq!(back.latched(), &[TripReason::InverterFault]);
        assert_eq!(t.unwrap().cause, Cause::Restored);
        let (fresh, t) = StateMachine::restore(&at(State::Running).persisted());
        assert_eq!(fresh.state(), State::Boot);
        assert!(t.is_none());
    }

    #[test]
    fn start_is_refused_while_a_fault_is_active() {
        let mut sm = at(State::Idle);
        let busy = Guards { active_fault: Some(TripReason::InverterFault), estop_released: true };
        assert!(sm.request(TransitionRequest::Start, busy).is_err());
        assert_eq!(sm.state(), State::Idle);
    }
}
