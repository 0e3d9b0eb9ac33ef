//! The final clamp: the single choke point every command passes through.
//!
//! Order of operations (each step can only move the set-point toward zero or hold it):
//! 1. an E-stop demand → zero (`Constraint::EmergencyStop`; checked first, so an E-stop is
//!    reported as what it is, although STOPPED is also "not RUNNING");
//! 2. outside RUNNING → zero (`Constraint::NotRunning`);
//! 3. a graceful shutdown replaces the target by zero (`Constraint::Shutdown`);
//! 4. the target is clamped into the envelope;
//! 5. the ramper moves the output toward it at this cycle's ramp rate (the site's, or a grid
//!    service's own; `None` = a grid service's step, bounded by the envelope alone);
//! 6. the ramped output is clamped into the envelope again, so a shrinking envelope cuts the
//!    command at once instead of waiting for the ramp (reductions toward zero are never delayed).
//!
//! Hence the invariant checked by the property tests: the command is inside the envelope, it is
//! zero outside RUNNING, and it either moved by at most the ramp step or moved toward zero
//! (`0 ≤ cmd/prev ≤ 1` in the sense of lying between zero and the previous command).

use crate::ramp::{PowerRamper, RampRate};
use ems_core::emergency::EmergencyDemand;
use ems_core::event::Constraint;
use ems_core::{Millis, State, Watts};
use ems_safety::Envelope;

/// The result of the final clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clamped {
    /// The battery set-point to command.
    pub command: Watts,
    /// The constraint that made `command` differ from the request, if any.
    pub binding: Option<Constraint>,
}

/// Apply the final clamp to `requested` at `now`. `ramper` holds the previous command.
#[must_use]
pub fn final_clamp(
    requested: Watts,
    now: Millis,
    state: State,
    demand: EmergencyDemand,
    envelope: &Envelope,
    ramper: &mut PowerRamper,
    ramp: Option<RampRate>,
) -> Clamped {
    let zero = |ramper: &mut PowerRamper, by: Constraint| {
        ramper.hold_zero(now);
        // An E-stop is named whenever it holds the command, also when nothing was requested
        // (the state machine already zeroes the request in STOPPED); other zero causes are
        // named only when they changed a request.
        let binding =
            if requested == Watts::ZERO && by != Constraint::EmergencyStop { None } else { Some(by) };
        Clamped { command: Watts::ZERO, binding }
    };
    if demand.force_zero {
        return zero(ramper, Constraint::EmergencyStop);
    }
    match state {
        State::Running => {}
        State::Boot | State::Idle | State::Error | State::Stopped => {
            return zero(ramper, Constraint::NotRunning);
        }
    }
    let (target, shutdown) = if demand.ramp_to_zero { (Watts::ZERO, true) } else { (requested, false) };
    let (target, by_envelope) = envelope.clamp(target);
    let ramped = ramper.step_at(target, now, ramp);
    let (command, cut) = envelope.clamp(ramped);
    if cut.is_some() {
        ramper.set_output(command);
    }
    let binding = if command == requested {
        None
    } else if cut.is_some() {
        cut
    } else if ramped != target {
        Some(Constraint::Ramp)
    } else if shutdown {
        Some(Constraint::Shutdown)
    } else {
        by_envelope
    };
    Clamped { command, binding }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ramp::RampRate;
    use ems_core::Quantity;

    fn env(charge: f32, discharge: f32) -> Envelope {
        let mut e = Envelope::new(ems_core::watts!(5000.0));
        e.limit_charge(Watts::saturating(charge), Constraint::BmsLimit);
        e.limit_discharge(Watts::saturating(discharge), Constraint::Limit(Quantity::SocLow));
        e
    }

    fn ramper() -> PowerRamper {
        let mut r = PowerRamper::new(RampRate::per_second(ems_core::watts!(1000.0)));
        let _ = r.step(Watts::ZERO, Millis::ZERO);
        r
    }

    fn rate() -> Option<RampRate> {
        Some(RampRate::per_second(ems_core::watts!(1000.0)))
    }

    const GO: EmergencyDemand =
        EmergencyDemand { force_zero: false, ramp_to_zero: false, open_contactors: false };

    #[test]
    fn zero_outside_running() {
        for s in [State::Boot, State::Idle, State::Error, State::Stopped] {
            let c = final_clamp(
                ems_core::watts!(3000.0),
                Millis::new(1000),
                s,
                GO,
                &env(5000.0, 5000.0),
                &mut ramper(),
                rate(),
            );
            assert_eq!(c.command, Watts::ZERO);
            assert_eq!(c.binding, Some(Constraint::NotRunning));
        }
    }

    #[test]
    fn ramp_limits_rise_and_envelope_cuts_immediately() {
        let mut r = ramper();
        let e = env(5000.0, 5000.0);
        let c =
            final_clamp(ems_core::watts!(3000.0), Millis::new(1000), State::Running, GO, &e, &mut r, rate());
        assert_eq!(c.command, ems_core::watts!(1000.0));
        assert_eq!(c.binding, Some(Constraint::Ramp));
        let c =
            final_clamp(ems_core::watts!(3000.0), Millis::new(2000), State::Running, GO, &e, &mut r, rate());
        assert_eq!(c.command, ems_core::watts!(2000.0));
        // Envelope shrinks to 500 W discharge: cut at once, no ramp-down delay.
        let c = final_clamp(
            ems_core::watts!(3000.0),
            Millis::new(2100),
            State::Running,
            GO,
            &env(5000.0, 500.0),
            &mut r,
            rate(),
        );
        assert_eq!(c.command, ems_core::watts!(500.0));
        assert_eq!(c.binding, Some(Constraint::Limit(Quantity::SocLow)));
    }

    #[test]
    fn estop_demand_zeroes_immediately() {
        let mut r = ramper();
        let e = env(5000.0, 5000.0);
        let _ =
            final_clamp(ems_core::watts!(1000.0), Millis::new(1000), State::Running, GO, &e, &mut r, rate());
        let stop = EmergencyDemand { force_zero: true, ramp_to_zero: false, open_contactors: true };
        let c = final_clamp(
            ems_core::watts!(1000.0),
            Millis::new(1001),
            State::Running,
            stop,
            &e,
            &mut r,
            rate(),
        );
        assert_eq!(c.command, Watts::ZERO);
        assert_eq!(c.binding, Some(Constraint::EmergencyStop));
    }

    #[test]
    fn shutdown_ramps_down() {
        let mut r = ramper();
        let e = env(5000.0, 5000.0);
        let _ =
            final_clamp(ems_core::watts!(-1500.0), Millis::new(1000), State::Running, GO, &e, &mut r, rate());
        let _ =
            final_clamp(ems_core::watts!(-1500.0), Millis::new(2000), State::Running, GO, &e, &mut r, rate());
        let down = EmergencyDemand { force_zero: false, ramp_to_zero: true, open_contactors: false };
        let c = final_clamp(
            ems_core::watts!(-1500.0),
            Millis::new(2500),
            State::Running,
            down,
            &e,
            &mut r,
            rate(),
        );
        assert_eq!(c.command, ems_core::watts!(-1000.0));
        assert_eq!(c.binding, Some(Constraint::Ramp));
    }
}
