//! A PID controller with output limits and anti-windup.
//!
//! Anti-windup by conditional integration, from two sides:
//!
//! * **inside**: the integrator does not accumulate while the output is saturated in the
//!   direction the error pushes it, so it recovers at once when the error reverses;
//! * **outside** ([`Pid::update_gated`]): the caller says whether the plant followed the previous
//!   output. A PID does not see what happens to its output downstream — a ramp limiter, a safety
//!   clamp, an override, a stopped plant — and an error the plant could not act on is not an
//!   error the integrator should remember. The caller that knows holds the integrator.
//!
//! The derivative acts on the measurement (no kick when the set-point jumps).

use ems_core::{Millis, Watts};

/// Gains of a [`Pid`] acting on power: output watts per watt of error (`kp`), per watt-second
/// (`ki`), per watt per second (`kd`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PidGains {
    kp: f32,
    ki: f32,
    kd: f32,
}

/// A gain that is not finite or is negative.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("PID gain '{name}' = {value} must be finite and >= 0")]
pub struct GainError {
    /// Which gain.
    pub name: &'static str,
    /// The rejected value.
    pub value: f32,
}

impl PidGains {
    /// All gains zero: the controller outputs zero.
    pub const ZERO: Self = Self { kp: 0.0, ki: 0.0, kd: 0.0 };

    /// Validate gains (finite, non-negative).
    ///
    /// # Errors
    /// [`GainError`] when a gain is negative or not finite.
    pub const fn try_new(kp: f32, ki: f32, kd: f32) -> Result<Self, GainError> {
        if !kp.is_finite() || kp < 0.0 {
            return Err(GainError { name: "kp", value: kp });
        }
        if !ki.is_finite() || ki < 0.0 {
            return Err(GainError { name: "ki", value: ki });
        }
        if !kd.is_finite() || kd < 0.0 {
            return Err(GainError { name: "kd", value: kd });
        }
        Ok(Self { kp, ki, kd })
    }

    /// Proportional gain.
    #[must_use]
    pub const fn kp(&self) -> f32 {
        self.kp
    }
}

/// A PID controller on power.
#[derive(Debug, Clone, PartialEq)]
pub struct Pid {
    gains: PidGains,
    out_min: Watts,
    out_max: Watts,
    integral: f32,
    last_measurement: Option<Watts>,
}

impl Pid {
    /// A controller with output limits `out_min..=out_max` (swapped if given the wrong way).
    #[must_use]
    pub fn new(gains: PidGains, out_min: Watts, out_max: Watts) -> Self {
        let (lo, hi) = if out_min <= out_max { (out_min, out_max) } else { (out_max, out_min) };
        Self { gains, out_min: lo, out_max: hi, integral: 0.0, last_measurement: None }
    }

    /// Forget the integrator and derivative history.
    pub fn reset(&mut self) {
        self.integral = 0.0;
        self.last_measurement = None;
    }

    /// The integral term (watts).
    #[must_use]
    pub fn integral(&self) -> Watts {
        Watts::saturating(self.integral)
    }

    /// One update: drive `measurement` toward `setpoint` over a step of `dt`.
    #[must_use]
    pub fn update(&mut self, setpoint: Watts, measurement: Watts, dt: Millis) -> Watts {
        self.update_gated(setpoint, measurement, dt, true)
    }

    /// One update with the integrator held unless `integrate`: the caller knows that the plant
    /// did not follow the previous output (it was ramped, clamped, replaced or the plant was
    /// stopped), so this cycle's error says nothing about what the integral should be. P and D
    /// act as in [`Self::update`]; the integral keeps its value (it is frozen, not reset).
    #[must_use]
    pub fn update_gated(
        &mut self,
        setpoint: Watts,
        measurement: Watts,
        dt: Millis,
        integrate: bool,
    ) -> Watts {
        let dt_s = dt.as_secs_f32();
        let error = (setpoint - measurement).get();
        let p = self.gains.kp * error;
        let d = match (self.last_measurement, dt_s > 0.0) {
            (Some(last), true) => -self.gains.kd * (measurement - last).get() / dt_s,
            _ => 0.0,
        };
        self.last_measurement = Some(measurement);
        let candidate_integral = self.integral + self.gains.ki * error * dt_s;
        let unclamped = p + candidate_integral + d;
        let lo = self.out_min.get();
        let hi = self.out_max.get();
        let saturated_high = unclamped > hi && error > 0.0;
        let saturated_low = unclamped < lo && error < 0.0;
        if integrate && !(saturated_high || saturated_low) && candidate_integral.is_finite() {
            self.integral = candidate_integral.clamp(lo, hi);
        }
        Watts::saturating(p + self.integral + d).clamp(self.out_min, self.out_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_gains_naming_them() {
        let e = PidGains::try_new(1.0, f32::NAN, 0.0).unwrap_err();
        assert_eq!(e.name, "ki");
        assert!(PidGains::try_new(-1.0, 0.0, 0.0).is_err());
    }

    #[test]
    fn output_respects_limits() {
        let g = PidGains::try_new(10.0, 1.0, 0.0).unwrap();
        let mut pid = Pid::new(g, ems_core::watts!(-100.0), ems_core::watts!(100.0));
        let out = pid.update(ems_core::watts!(1000.0), Watts::ZERO, Millis::new(1000));
        assert_eq!(out, ems_core::watts!(100.0));
    }

    #[test]
    fn integrator_removes_steady_state_error() {
        // Plant: measurement follows output exactly with an offset disturbance of -50 W.
        let g = PidGains::try_new(0.2, 0.5, 0.0).unwrap();
        let mut pid = Pid::new(g, ems_core::watts!(-1000.0), ems_core::watts!(1000.0));
        let mut y = Watts::ZERO;
        for _ in 0..200 {
            let u = pid.update(ems_core::watts!(100.0), y, Millis::new(100));
            y = u - ems_core::watts!(50.0);
        }
        assert!((y.get() - 100.0).abs() < 1.0, "y = {y}");
    }

    #[test]
    fn anti_windup_recovers_immediately() {
        let g = PidGains::try_new(0.0, 1.0, 0.0).unwrap();
        let mut pid = Pid::new(g, ems_core::watts!(-10.0), ems_core::watts!(10.0));
        for _ in 0..1000 {
            let _ = pid.update(ems_core::watts!(1000.0), Watts::ZERO, Millis::new(1000));
        }
        // Error reverses: output must leave the upper limit within a couple of steps.
        let mut out = ems_core::watts!(10.0);
        for _ in 0..2 {
            out = pid.update(ems_core::watts!(-1000.0), Watts::ZERO, Millis::new(1000));
        }
        assert!(out < ems_core::watts!(10.0), "still wound up: {out}");
    }

    #[test]
    fn gated_update_holds_the_integral_and_still_acts_proportionally() {
        let g = PidGains::try_new(0.5, 1.0, 0.0).unwrap();
        let mut pid = Pid::new(g, ems_core::watts!(-1000.0), ems_core::watts!(1000.0));
        let _ = pid.update(ems_core::watts!(100.0), Watts::ZERO, Millis::new(1000));
        assert_eq!(pid.integral(), ems_core::watts!(100.0));
        for _ in 0..50 {
            let out = pid.update_gated(ems_core::watts!(100.0), Watts::ZERO, Millis::new(1000), false);
            assert_eq!(out, ems_core::watts!(150.0));
        }
        assert_eq!(pid.integral(), ems_core::watts!(100.0));
    }
}
