//! FCR-D upwards and downwards: 0 at 49.9 / 50.1 Hz, 100 % of C at 49.5 / 50.5 Hz, linear
//! between, added on top of the baseline. The response rises without delay (FCR-N, saturated
//! at 49.9 / 50.1 Hz, hands over with no gap) and falls back after the nadir no faster than
//! the parameter set's deactivation limit.

use crate::continuity::Continuity;
use crate::error::ParamError;
use crate::ler::{EnergyView, LerConfig};
use crate::math;
use crate::params::{check_capacity, ParamSet};
use crate::status::{Activation, LerStatus, Response, ServiceKind, ServiceStatus};
use ems_control::{GridRequest, GridService, Reserve};
use ems_core::{Hertz, Millis, Snapshot, Watts};
use ems_safety::Envelope;

/// Which FCR-D product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FcrDDirection {
    /// Under-frequency: the Δ is `+` (discharge).
    Up,
    /// Over-frequency: the Δ is `−` (charge).
    Down,
}

/// The static FCR-D response as a share of C (`0..=1`, a magnitude) at `f`.
#[must_use]
pub fn fcr_d_share(direction: FcrDDirection, f: Hertz, params: &ParamSet) -> f32 {
    let deviation = match direction {
        FcrDDirection::Up => params.nominal.get() - f.get(),
        FcrDDirection::Down => f.get() - params.nominal.get(),
    };
    math::fraction_between(deviation, params.fcr_d_start_deviation.get(), params.fcr_d_full_deviation.get())
}

/// An FCR-D service (one direction) of capacity C.
#[derive(Debug, Clone, PartialEq)]
pub struct FcrD {
    direction: FcrDDirection,
    capacity: Watts,
    params: ParamSet,
    ler: Option<LerConfig>,
    clock: Continuity,
    delta: Watts,
    status: ServiceStatus,
}

impl FcrD {
    /// FCR-D in `direction` of `capacity` under `params`.
    ///
    /// # Errors
    /// [`ParamError`] for a capacity that is not > 0 W or an invalid parameter set.
    pub fn try_new(direction: FcrDDirection, capacity: Watts, params: ParamSet) -> Result<Self, ParamError> {
        let kind = Self::kind_of(direction);
        check_capacity(kind.name(), "capacity", capacity)?;
        params.validate()?;
        Ok(Self {
            direction,
            capacity,
            params,
            ler: None,
            clock: Continuity::default(),
            delta: Watts::ZERO,
            status: ServiceStatus::inactive(kind),
        })
    }

    /// FCR-D upwards.
    ///
    /// # Errors
    /// As [`Self::try_new`].
    pub fn up(capacity: Watts, params: ParamSet) -> Result<Self, ParamError> {
        Self::try_new(FcrDDirection::Up, capacity, params)
    }

    /// FCR-D downwards.
    ///
    /// # Errors
    /// As [`Self::try_new`].
    pub fn down(capacity: Watts, params: ParamSet) -> Result<Self, ParamError> {
        Self::try_new(FcrDDirection::Down, capacity, params)
    }

    /// The same service reporting its endurance from `ler` (when it runs alone).
    #[must_use]
    pub fn with_ler(self, ler: LerConfig) -> Self {
        Self { ler: Some(ler), ..self }
    }

    const fn kind_of(direction: FcrDDirection) -> ServiceKind {
        match direction {
            FcrDDirection::Up => ServiceKind::FcrDUp,
            FcrDDirection::Down => ServiceKind::FcrDDown,
        }
    }

    /// The direction.
    #[must_use]
    pub const fn direction(&self) -> FcrDDirection {
        self.direction
    }

    /// The sold capacity C.
    #[must_use]
    pub const fn capacity(&self) -> Watts {
        self.capacity
    }

    /// The last status.
    #[must_use]
    pub const fn status(&self) -> ServiceStatus {
        self.status
    }

    /// The reservation: C of power and `C · fcr_d_energy_time` (C/3 h) of energy, in its
    /// direction only.
    #[must_use]
    pub fn reserve(&self) -> Reserve {
        let energy = math::energy_for(self.capacity, self.params.fcr_d_energy_time);
        match self.direction {
            FcrDDirection::Up => {
                Reserve { discharge: self.capacity, energy_for_discharge: energy, ..Reserve::NONE }
            }
            FcrDDirection::Down => {
                Reserve { charge: self.capacity, energy_for_charge: energy, ..Reserve::NONE }
            }
        }
    }

    /// One call (see [`crate::FcrN::respond`] for the arguments).
    pub fn respond(&mut self, now: Millis, frequency: Option<Hertz>, energy: Option<EnergyView>) -> Response {
        let dt = if let Some(dt) = self.clock.tick(now, self.params.max_call_gap) {
            dt
        } else {
            self.delta = Watts::ZERO;
            Millis::ZERO
        };
        let (activation, engaged) = match frequency {
            Some(f) => {
                let share = fcr_d_share(self.direction, f, &self.params);
                let target = match self.direction {
                    FcrDDirection::Up => self.capacity.scale(share),
                    FcrDDirection::Down => -self.capacity.scale(share),
                };
                let max_fall = math::rate_step(self.params.fcr_d_max_deactivation_rate, self.capacity, dt);
                self.delta = math::limit_fall(self.delta, target, max_fall);
                let activation = if self.delta.abs() > target.abs() {
                    Activation::Deactivating
                } else if self.delta == Watts::ZERO {
                    Activation::Armed
                } else {
                    Activation::Active
                };
                (activation, true)
            }
            None => {
                let step = math::rate_step(self.params.stale_deactivation_rate, self.capacity, dt);
                self.delta = math::fall_to_zero(self.delta, step);
                (Activation::FrequencyLost, self.delta != Watts::ZERO)
            }
        };
        let endurance = energy.map(|v| v.endurance(self.capacity));
        let (up, down) = endurance.unwrap_or((None, None));
        let ler = match self.direction {
            FcrDDirection::Up => LerStatus { endurance_up: up, ..LerStatus::default() },
            FcrDDirection::Down => LerStatus { endurance_down: down, ..LerStatus::default() },
        };
        self.status = ServiceStatus {
            kind: Self::kind_of(self.direction),
            activation,
            delta: self.delta,
            frequency,
            ler,
        };
        Response { delta: self.delta, reserve: self.reserve(), status: self.status, engaged }
    }
}

impl GridService for FcrD {
    fn name(&self) -> &'static str {
        Self::kind_of(self.direction).name()
    }

    fn request(&mut self, now: Millis, snapshot: &Snapshot, _envelope: &Envelope) -> Option<GridRequest> {
        let energy = self.ler.and_then(|l| l.view(snapshot.battery.soc.value_at(now)));
        self.respond(now, snapshot.grid.frequency.value_at(now), energy).to_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hz(v: f32) -> Option<Hertz> {
        Some(Hertz::try_new(v).unwrap())
    }

    #[test]
    fn corner_points_up_and_down() {
        let p = ParamSet::default();
        let mut up = FcrD::up(ems_core::watts!(1000.0), p).unwrap();
        let mut down = FcrD::down(ems_core::watts!(1000.0), p).unwrap();
        // Falling sequences only, so the deactivation limit never binds.
        let mut t = 0;
        for (f, want) in
            [(50.0, 0.0), (49.9, 0.0), (49.8, 250.0), (49.7, 500.0), (49.5, 1000.0), (49.0, 1000.0)]
        {
            t += 100;
            let r = up.respond(Millis::new(t), hz(f), None);
            assert!((r.delta.get() - want).abs() < 0.5, "up at {f}: {}", r.delta);
        }
        for (f, want) in
            [(50.0, 0.0), (50.1, 0.0), (50.2, -250.0), (50.3, -500.0), (50.5, -1000.0), (51.0, -1000.0)]
        {
            t += 100;
            let r = down.respond(Millis::new(t), hz(f), None);
            assert!((r.delta.get() - want).abs() < 0.5, "down at {f}: {}", r.delta);
        }
    }

    #[test]
    fn falls_back_no_faster_than_the_limit() {
        let mut up = FcrD::up(ems_core::watts!(1000.0), ParamSet::default()).unwrap();
        let _ = up.respond(Millis::new(0), hz(49.5), None);
        // The frequency recovers at once; 20 %/s of 1000 W over 100 ms = 20 W per call.
        let r = up.respond(Millis::new(100), hz(50.0), None);
        assert!((r.delta.get() - 980.0).abs() < 0.5, "{}", r.delta);
        assert_eq!(r.status.activation, Activation::Deactivating);
        let mut t = 100;
        while up.respond(Millis::new(t), hz(50.0), None).delta > Watts::ZERO {
            t += 100;
        }
        assert!((5000..=5200).contains(&t), "back to zero after {t} ms");
        assert_eq!(up.status().activation, Activation::Armed);
    }
}
