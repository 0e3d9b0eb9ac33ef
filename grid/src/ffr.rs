//! FFR: a full step of the sold capacity C when the locally measured frequency reaches the
//! activation level (49.7 / 49.6 / 49.5 Hz; this crate adds no delay to the rule's 1.3 / 1.0 /
//! 0.7 s), held for the support duration, then deactivated no faster than the configured rate,
//! then a recovery before it can be armed again. Re-arming also needs the frequency back above
//! `threshold + hysteresis` for the re-arm time, so a noisy frequency at the threshold gives one
//! activation per event, not a chatter.

use crate::continuity::Continuity;
use crate::error::ParamError;
use crate::ler::{EnergyView, LerConfig};
use crate::math;
use crate::params::{check_capacity, FfrParams};
use crate::status::{Activation, LerStatus, Response, ServiceKind, ServiceStatus};
use ems_control::{GridRequest, GridService, Reserve};
use ems_core::{Hertz, Millis, Snapshot, Watts};
use ems_safety::Envelope;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Armed,
    Holding { activated_at: Millis },
    Deactivating { activated_at: Millis },
    Recovering { activated_at: Millis, above_since: Option<Millis> },
}

/// An FFR service of capacity C.
#[derive(Debug, Clone, PartialEq)]
pub struct Ffr {
    capacity: Watts,
    params: FfrParams,
    ler: Option<LerConfig>,
    clock: Continuity,
    phase: Phase,
    delta: Watts,
    activations: u32,
    status: ServiceStatus,
}

impl Ffr {
    /// FFR of `capacity` with `params`.
    ///
    /// # Errors
    /// [`ParamError`] for a capacity that is not > 0 W or parameters outside the FFR rule.
    pub fn try_new(capacity: Watts, params: FfrParams) -> Result<Self, ParamError> {
        check_capacity("FFR", "capacity", capacity)?;
        params.validate()?;
        Ok(Self {
            capacity,
            params,
            ler: None,
            clock: Continuity::default(),
            phase: Phase::Armed,
            delta: Watts::ZERO,
            activations: 0,
            status: ServiceStatus::inactive(ServiceKind::Ffr),
        })
    }

    /// The same service reporting its endurance from `ler` (when it runs alone).
    #[must_use]
    pub fn with_ler(self, ler: LerConfig) -> Self {
        Self { ler: Some(ler), ..self }
    }

    /// The sold capacity C.
    #[must_use]
    pub const fn capacity(&self) -> Watts {
        self.capacity
    }

    /// The parameters.
    #[must_use]
    pub const fn params(&self) -> &FfrParams {
        &self.params
    }

    /// The last status.
    #[must_use]
    pub const fn status(&self) -> ServiceStatus {
        self.status
    }

    /// How many activations since construction (for audit and the once-per-event tests).
    #[must_use]
    pub const fn activations(&self) -> u32 {
        self.activations
    }

    /// The reservation: C of discharge power and the energy of one activation (the support
    /// at full power plus the deactivation ramp).
    #[must_use]
    pub fn reserve(&self) -> Reserve {
        let support = math::energy_for(self.capacity, self.params.support_duration);
        let ramp = math::energy_for(self.capacity, self.params.deactivation_time()).scale(0.5);
        Reserve { discharge: self.capacity, energy_for_discharge: support + ramp, ..Reserve::NONE }
    }

    fn threshold(&self) -> Hertz {
        self.params.level.threshold()
    }

    /// One call (see [`crate::FcrN::respond`] for the arguments).
    pub fn respond(&mut self, now: Millis, frequency: Option<Hertz>, energy: Option<EnergyView>) -> Response {
        let dt = if let Some(dt) = self.clock.tick(now, self.params.max_call_gap) {
            dt
        } else {
            // Not called for a while: an activation in progress was not delivered; it ends
            // here and the recovery runs from its start.
            if let Phase::Holding { activated_at } | Phase::Deactivating { activated_at } = self.phase {
                self.phase = Phase::Recovering { activated_at, above_since: None };
            }
            self.delta = Watts::ZERO;
            Millis::ZERO
        };
        let fall = math::rate_step(self.params.deactivation_rate, self.capacity, dt);
        match frequency {
            Some(f) => self.step(now, f, fall),
            None => self.step_lost(fall),
        }
        let activation = match (frequency, self.phase) {
            (None, _) => Activation::FrequencyLost,
            (Some(_), Phase::Armed) => Activation::Armed,
            (Some(_), Phase::Holding { .. }) => Activation::Active,
            (Some(_), Phase::Deactivating { .. }) => Activation::Deactivating,
            (Some(_), Phase::Recovering { activated_at, .. }) => {
                Activation::Recovering { ready_at: activated_at.plus(self.params.recovery) }
            }
        };
        let endurance_up = energy.and_then(|v| v.endurance(self.capacity).0);
        self.status = ServiceStatus {
            kind: ServiceKind::Ffr,
            activation,
            delta: self.delta,
            frequency,
            ler: LerStatus { endurance_up, ..LerStatus::default() },
        };
        let engaged = frequency.is_some() || self.delta != Watts::ZERO;
        Response { delta: self.delta, reserve: self.reserve(), status: self.status, engaged }
    }

    fn step(&mut self, now: Millis, f: Hertz, fall: Watts) {
        match self.phase {
            Phase::Armed => {
                if f <= self.threshold() {
                    self.phase = Phase::Holding { activated_at: now };
                    self.activations = self.activations.saturating_add(1);
                    self.delta = self.capacity;
                } else {
                    self.delta = Watts::ZERO;
                }
            }
            Phase::Holding { activated_at } => {
                if now.since(activated_at) >= self.params.support_duration {
                    self.phase = Phase::Deactivating { activated_at };
                    self.deactivate(fall);
                } else {
                    self.delta = self.capacity;
                }
            }
            Phase::Deactivating { .. } => self.deactivate(fall),
            Phase::Recovering { activated_at, above_since } => {
                let rearm_level = self.threshold() + self.params.hysteresis;
                let above_since = if f >= rearm_level { Some(above_since.unwrap_or(now)) } else { None };
                let recovered = now.since(activated_at) >= self.params.recovery;
                let settled = above_since.is_some_and(|t| now.since(t) >= self.params.rearm_time);
                self.phase = if recovered && settled {
                    Phase::Armed
                } else {
                    Phase::Recovering { activated_at, above_since }
                };
                self.delta = Watts::ZERO;
            }
        }
    }

    /// A lost frequency: an activation falls back at the allowed rate; nothing new starts.
    fn step_lost(&mut self, fall: Watts) {
        match self.phase {
            Phase::Armed => self.delta = Watts::ZERO,
            Phase::Holding { activated_at } | Phase::Deactivating { activated_at } => {
                self.phase = Phase::Deactivating { activated_at };
                self.deactivate(fall);
            }
            Phase::Recovering { activated_at, .. } => {
                self.phase = Phase::Recovering { activated_at, above_since: None };
                self.delta = Watts::ZERO;
            }
        }
    }

    fn deactivate(&mut self, fall: Watts) {
        self.delta = math::fall_to_zero(self.delta, fall);
        if self.delta == Watts::ZERO {
            if let Phase::Deactivating { activated_at } = self.phase {
                self.phase = Phase::Recovering { activated_at, above_since: None };
            }
        }
    }
}

impl GridService for Ffr {
    fn name(&self) -> &'static str {
        ServiceKind::Ffr.name()
    }

    fn request(&mut self, now: Millis, snapshot: &Snapshot, _envelope: &Envelope) -> Option<GridRequest> {
        let energy = self.ler.and_then(|l| l.view(snapshot.battery.soc.value_at(now)));
        self.respond(now, snapshot.grid.frequency.value_at(now), energy).to_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{FfrLevel, FfrSupport};

    fn hz(v: f32) -> Option<Hertz> {
        Some(Hertz::try_new(v).unwrap())
    }

    #[test]
    fn steps_at_the_threshold_holds_then_ramps_down_then_recovers() {
        let params = FfrParams::nordic(FfrLevel::Hz49_6, FfrSupport::Short);
        let mut s = Ffr::try_new(ems_core::watts!(1000.0), params).unwrap();
        assert_eq!(s.respond(Millis::new(0), hz(49.61), None).delta, Watts::ZERO);
        let r = s.respond(Millis::new(100), hz(49.6), None);
        assert_eq!(r.delta, ems_core::watts!(1000.0), "full at once, no delay of its own");
        // Support: 5 s + the level's 1.0 s activation time, counted from the trigger.
        assert_eq!(params.support_duration, Millis::from_secs(6));
        for t in (200..=6000).step_by(100) {
            let r = s.respond(Millis::new(t), hz(49.9), None);
            assert_eq!(r.delta, ems_core::watts!(1000.0), "held for the support even if f recovers ({t} ms)");
        }
        let r = s.respond(Millis::new(6100), hz(49.9), None);
        assert_eq!(r.status.activation, Activation::Deactivating);
        assert!(r.delta < ems_core::watts!(1000.0));
        assert!(r.delta >= ems_core::watts!(1000.0 - 18.0 - 0.01), "18 %/s: {}", r.delta);
        assert!(matches!(s.status().activation, Activation::Deactivating));
        let _ = s.respond(Millis::new(6200), hz(49.9), None);
        assert_eq!(s.activations(), 1);
    }

    #[test]
    fn lost_frequency_while_armed_disengages_at_once() {
        let mut s =
            Ffr::try_new(ems_core::watts!(1000.0), FfrParams::nordic(FfrLevel::Hz49_7, FfrSupport::Long))
                .unwrap();
        let _ = s.respond(Millis::new(0), hz(50.0), None);
        let r = s.respond(Millis::new(100), None, None);
        assert!(!r.engaged);
        assert_eq!(r.to_request(), None);
    }
}
