//! The emergency handler: E-stop latching, graceful shutdown and manual reset.
//!
//! The E-stop does not wait for anything: the cycle in which the input edge (or a software
//! E-stop request) is seen commands zero power and opens the contactors, and the state machine
//! latches STOPPED. Only [`EmergencyHandler::manual_reset`] with the input released and an
//! operator reason leaves STOPPED.
//!
//! A graceful shutdown ramps the set-point to zero (the controller's ramper does the ramp), then
//! leaves RUNNING, opens the contactors and verifies that they report open. If that cannot be
//! verified within the timeout, the system trips with [`TripReason::ShutdownFailed`].

use crate::event::{EventKind, Events, TripReason};
use crate::snapshot::{ContactorState, EStopInput, Snapshot};
use crate::state::{Guards, State, StateMachine, Transition, TransitionError, TransitionRequest};
use crate::units::{Millis, Watts};

/// Maximum stored length of an operator reason, in bytes.
pub const REASON_CAPACITY: usize = 64;

/// Graceful-shutdown settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShutdownConfig {
    /// Battery power magnitude regarded as "zero" when verifying.
    pub zero_threshold: Watts,
    /// Time allowed for ramp-down plus contactor opening.
    pub timeout: Millis,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { zero_threshold: crate::watts!(50.0), timeout: Millis::from_secs(30) }
    }
}

/// Where a graceful shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPhase {
    /// No shutdown requested.
    Inactive,
    /// Ramping the set-point to zero.
    RampingDown {
        /// When the shutdown started.
        since: Millis,
    },
    /// Power is zero; contactors commanded open, waiting for feedback.
    OpeningContactors {
        /// When the shutdown started.
        since: Millis,
    },
    /// Zero power and open contactors verified.
    Complete,
    /// Could not be verified in time (tripped).
    Failed,
}

/// What the emergency handler demands of this cycle's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmergencyDemand {
    /// Command zero immediately (not ramped).
    pub force_zero: bool,
    /// Ramp the set-point to zero (graceful shutdown).
    pub ramp_to_zero: bool,
    /// Command the contactors open.
    pub open_contactors: bool,
}

/// The emergency handler.
#[derive(Debug, Clone)]
pub struct EmergencyHandler {
    config: ShutdownConfig,
    last_input: Option<EStopInput>,
    phase: ShutdownPhase,
    last_reset_reason: heapless::String<REASON_CAPACITY>,
}

impl EmergencyHandler {
    /// A handler with the given shutdown settings.
    #[must_use]
    pub const fn new(config: ShutdownConfig) -> Self {
        Self {
            config,
            last_input: None,
            phase: ShutdownPhase::Inactive,
            last_reset_reason: heapless::String::new(),
        }
    }

    /// Current shutdown phase.
    #[must_use]
    pub const fn shutdown_phase(&self) -> ShutdownPhase {
        self.phase
    }

    /// The reason given with the last successful manual reset (for the audit log).
    #[must_use]
    pub fn last_reset_reason(&self) -> &str {
        &self.last_reset_reason
    }

    /// Check the E-stop input and advance a graceful shutdown. Call first in every cycle.
    /// `last_command` is the battery set-point commanded in the previous cycle.
    pub fn poll(
        &mut self,
        now: Millis,
        snapshot: &Snapshot,
        last_command: Watts,
        sm: &mut StateMachine,
        events: &mut Events,
    ) -> EmergencyDemand {
        let input = snapshot.estop.value_at(now);
        match (self.last_input, input) {
            (prev, Some(EStopInput::Pressed)) if prev != Some(EStopInput::Pressed) => {
                events.push(now, EventKind::EStopPressed);
            }
            (Some(EStopInput::Pressed), Some(EStopInput::Released)) => {
                events.push(now, EventKind::EStopReleased);
            }
            _ => {}
        }
        // Only a reading of known value changes the remembered input: an unreadable input is
        // handled as "unavailable" by the safety envelope (zero power), and a later good
        // `Pressed` reading is still an edge relative to the last known `Released`.
        if input.is_some() {
            self.last_input = input;
        }
        if input == Some(EStopInput::Pressed) {
            if let Some(t) = sm.emergency_stop() {
                events.push(now, t.event(now).kind);
            }
            // A graceful shutdown requested before or during the E-stop goes on: the E-stop
            // forces zero and open contactors, and the shutdown completes once both are
            // verified (a held E-stop must not keep a shutdown from ever completing).
        }
        self.advance_shutdown(now, snapshot, last_command, sm, events);
        self.demand(sm.state())
    }

    /// A software E-stop (API call, operator button). Same effect as the input edge.
    pub fn request_estop(
        &mut self,
        now: Millis,
        sm: &mut StateMachine,
        events: &mut Events,
    ) -> EmergencyDemand {
        events.push(now, EventKind::EStopPressed);
        if let Some(t) = sm.emergency_stop() {
            events.push(now, t.event(now).kind);
        }
        self.demand(sm.state())
    }

    /// Manual reset out of STOPPED. Needs the E-stop input released (good reading) and a
    /// non-empty operator `reason`; `active_fault` is a fault still present now, which sends the
    /// system to ERROR instead of IDLE.
    ///
    /// # Errors
    /// [`crate::state::TransitionError`] when the state machine is not STOPPED, the E-stop is still pressed or the reason is empty.
    pub fn manual_reset(
        &mut self,
        now: Millis,
        reason: &str,
        snapshot: &Snapshot,
        active_fault: Option<TripReason>,
        sm: &mut StateMachine,
        events: &mut Events,
    ) -> Result<Transition, TransitionError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(TransitionError::MissingReason);
        }
        let guards = Guards {
            active_fault,
            estop_released: snapshot.estop.value_at(now) == Some(EStopInput::Released),
        };
        let t = sm.request(TransitionRequest::Reset, guards)?;
        self.last_reset_reason.clear();
        for c in reason.chars() {
            if self.last_reset_reason.push(c).is_err() {
                break;
            }
        }
        events.push(now, t.event(now).kind);
        Ok(t)
    }

    /// Start a graceful shutdown (ramp to zero, open contactors, verify).
    pub fn begin_shutdown(&mut self, now: Millis, events: &mut Events) {
        if matches!(self.phase, ShutdownPhase::Inactive | ShutdownPhase::Complete | ShutdownPhase::Failed) {
            self.phase = ShutdownPhase::RampingDown { since: now };
            events.push(now, EventKind::ShutdownStarted);
        }
    }

    fn advance_shutdown(
        &mut self,
        now: Millis,
        snapshot: &Snapshot,
        last_command: Watts,
        sm: &mut StateMachine,
        events: &mut Events,
    ) {
        let since = match self.phase {
            ShutdownPhase::RampingDown { since } | ShutdownPhase::OpeningContactors { since } => since,
            ShutdownPhase::Inactive | ShutdownPhase::Complete | ShutdownPhase::Failed => return,
        };
        if now.since(since) > self.config.timeout {
            self.phase = ShutdownPhase::Failed;
            if let Some(t) = sm.trip(TripReason::ShutdownFailed) {
                events.push(now, t.event(now).kind);
            }
            return;
        }
        let threshold = self.config.zero_threshold;
        if let ShutdownPhase::RampingDown { since } = self.phase {
            let measured_zero =
                snapshot.inverter.active_power.value_at(now).is_some_and(|p| p.abs() <= threshold);
            let not_acting = !sm.state().may_act();
            if (last_command == Watts::ZERO && measured_zero) || not_acting {
                if sm.state() == State::Running {
                    let t = sm.request(TransitionRequest::Stop, Guards::default());
                    if let Ok(t) = t {
                        events.push(now, t.event(now).kind);
                    }
                }
                self.phase = ShutdownPhase::OpeningContactors { since };
            }
        }
        if let ShutdownPhase::OpeningContactors { .. } = self.phase {
            let open = snapshot.contactor.value_at(now) == Some(ContactorState::Open);
            let measured_zero =
                snapshot.inverter.active_power.value_at(now).is_some_and(|p| p.abs() <= threshold);
            if open && measured_zero {
                self.phase = ShutdownPhase::Complete;
                events.push(now, EventKind::ShutdownComplete);
            }
        }
    }

    fn demand(&self, state: State) -> EmergencyDemand {
        let stopped = state == State::Stopped;
        let (ramp, open) = match self.phase {
            ShutdownPhase::RampingDown { .. } => (true, false),
            ShutdownPhase::OpeningContactors { .. } | ShutdownPhase::Complete | ShutdownPhase::Failed => {
                (true, true)
            }
            ShutdownPhase::Inactive => (false, false),
        };
        EmergencyDemand { force_zero: stopped, ramp_to_zero: ramp, open_contactors: stopped || open }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurement::Measurement;
    use crate::state::TransitionRequest as R;

    fn snap(estop: EStopInput, power: f32, contactor: ContactorState, now: u64) -> Snapshot {
        let mut s = Snapshot::unknown(crate::watts!(5000.0));
        let age = Millis::new(1000);
        s.estop = Measurement::good(estop, Millis::new(now), age);
        s.inverter.active_power = Measurement::good(Watts::saturating(power), Millis::new(now), age);
        s.contactor = Measurement::good(contactor, Millis::new(now), age);
        s
    }

    fn running() -> StateMachine {
        let mut sm = StateMachine::new();
        let ok = Guards { active_fault: None, estop_released: true };
        sm.request(R::BootComplete, ok).unwrap();
        sm.request(R::Start, ok).unwrap();
        sm
    }

    #[test]
    fn estop_edge_zeroes_opens_and_latches_in_the_same_poll() {
        let mut h = EmergencyHandler::new(ShutdownConfig::default());
        let mut sm = running();
        let mut ev = Events::new();
        let d = h.poll(
            Millis::new(0),
            &snap(EStopInput::Released, 3000.0, ContactorState::Closed, 0),
            crate::watts!(3000.0),
            &mut sm,
            &mut ev,
        );
        assert!(!d.force_zero);
        let d = h.poll(
            Millis::new(100),
            &snap(EStopInput::Pressed, 3000.0, ContactorState::Closed, 100),
            crate::watts!(3000.0),
            &mut sm,
            &mut ev,
        );
        assert!(d.force_zero && d.open_contactors);
        assert_eq!(sm.state(), State::Stopped);
        assert!(ev.iter().any(|e| e.kind == EventKind::EStopPressed));
        // Releasing the button does not leave STOPPED.
        let d = h.poll(
            Millis::new(200),
            &snap(EStopInput::Released, 0.0, ContactorState::Open, 200),
            Watts::ZERO,
            &mut sm,
            &mut ev,
        );
        assert!(d.force_zero);
        assert_eq!(sm.state(), State::Stopped);
        assert!(ev.iter().any(|e| e.kind == EventKind::EStopReleased));
    }

    #[test]
    fn reset_needs_reason_and_released_input() {
        let mut h = EmergencyHandler::new(ShutdownConfig::default());
        let mut sm = running();
        let mut ev = Events::new();
        h.request_estop(Millis::ZERO, &mut sm, &mut ev);
        let pressed = snap(EStopInput::Pressed, 0.0, ContactorState::Open, 0);
        let released = snap(EStopInput::Released, 0.0, ContactorState::Open, 0);
        assert_eq!(
            h.manual_reset(Millis::ZERO, "  ", &released, None, &mut sm, &mut ev),
            Err(TransitionError::MissingReason)
        );
        assert_eq!(
            h.manual_reset(Millis::ZERO, "checked", &pressed, None, &mut sm, &mut ev),
            Err(TransitionError::EStopStillPressed)
        );
        let t = h.manual_reset(Millis::ZERO, "inspected cabinet", &released, None, &mut sm, &mut ev).unwrap();
        assert_eq!(t.to, State::Idle);
        assert_eq!(h.last_reset_reason(), "inspected cabinet");
    }

    #[test]
    fn graceful_shutdown_ramps_opens_and_verifies() {
        let mut h = EmergencyHandler::new(ShutdownConfig::default());
        let mut sm = running();
        let mut ev = Events::new();
        h.begin_shutdown(Millis::ZERO, &mut ev);
        let d = h.poll(
            Millis::new(100),
            &snap(EStopInput::Released, 2000.0, ContactorState::Closed, 100),
            crate::watts!(1500.0),
            &mut sm,
            &mut ev,
        );
        assert!(d.ramp_to_zero && !d.open_contactors);
        assert_eq!(sm.state(), State::Running);
        let d = h.poll(
            Millis::new(2000),
            &snap(EStopInput::Released, 10.0, ContactorState::Closed, 2000),
            Watts::ZERO,
            &mut sm,
            &mut ev,
        );
        assert!(d.open_contactors);
        assert_eq!(sm.state(), State::Idle);
        h.poll(
            Millis::new(2100),
            &snap(EStopInput::Released, 0.0, ContactorState::Open, 2100),
            Watts::ZERO,
            &mut sm,
            &mut ev,
        );
        assert_eq!(h.shutdown_phase(), ShutdownPhase::Complete);
        assert!(ev.iter().any(|e| e.kind == EventKind::ShutdownComplete));
    }

    #[test]
    fn shutdown_completes_while_the_estop_is_held() {
        let mut h = EmergencyHandler::new(ShutdownConfig::default());
        let mut sm = running();
        let mut ev = Events::new();
        let held = |t| snap(EStopInput::Pressed, 0.0, ContactorState::Open, t);
        h.poll(Millis::new(0), &held(0), Watts::ZERO, &mut sm, &mut ev);
        assert_eq!(sm.state(), State::Stopped);
        h.begin_shutdown(Millis::new(100), &mut ev);
        for t in [200, 300] {
            let d = h.poll(Millis::new(t), &held(t), Watts::ZERO, &mut sm, &mut ev);
            assert!(d.force_zero && d.open_contactors);
        }
        assert_eq!(h.shutdown_phase(), ShutdownPhase::Complete);
        // And a press during a shutdown does not cancel it.
        let mut h = EmergencyHandler::new(ShutdownConfig::default());
        let mut sm = running();
        h.begin_shutdown(Millis::ZERO, &mut ev);
        h.poll(Millis::new(100), &held(100), Watts::ZERO, &mut sm, &mut ev);
        h.poll(Millis::new(200), &held(200), Watts::ZERO, &mut sm, &mut ev);
        assert_eq!(h.shutdown_phase(), ShutdownPhase::Complete);
    }

    #[test]
    fn shutdown_that_cannot_be_verified_trips() {
        let mut h = EmergencyHandler::new(ShutdownConfig::default());
        let mut sm = running();
        let mut ev = Events::new();
        h.begin_shutdown(Millis::ZERO, &mut ev);
        // Contactor stays closed (welded).
        for t in (0..=31_000).step_by(1000) {
            h.poll(
                Millis::new(t),
                &snap(EStopInput::Released, 0.0, ContactorState::Closed, t),
                Watts::ZERO,
                &mut sm,
                &mut ev,
            );
        }
        assert_eq!(h.shutdown_phase(), ShutdownPhase::Failed);
        assert_eq!(sm.state(), State::Error);
        assert_eq!(sm.latched(), &[TripReason::ShutdownFailed]);
    }
}
