//! Power ramper: limits how fast the set-point may change.

use ems_core::{Millis, Watts};

/// A ramp rate in watts per second (magnitude).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct RampRate(Watts);

impl RampRate {
    /// A rate of `per_second` W/s (negative values count as their magnitude).
    #[must_use]
    pub fn per_second(per_second: Watts) -> Self {
        Self(per_second.abs())
    }

    /// The rate in W/s.
    #[must_use]
    pub const fn watts_per_second(self) -> Watts {
        self.0
    }

    /// The largest change allowed over `dt`.
    #[must_use]
    pub fn max_step(self, dt: Millis) -> Watts {
        self.0.scale(dt.as_secs_f32())
    }
}

/// Moves an output toward a target no faster than the ramp rate.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerRamper {
    rate: RampRate,
    output: Watts,
    last: Option<Millis>,
}

impl PowerRamper {
    /// A ramper starting at zero.
    #[must_use]
    pub const fn new(rate: RampRate) -> Self {
        Self { rate, output: Watts::ZERO, last: None }
    }

    /// The current output.
    #[must_use]
    pub const fn output(&self) -> Watts {
        self.output
    }

    /// The ramp rate.
    #[must_use]
    pub const fn rate(&self) -> RampRate {
        self.rate
    }

    /// Step toward `target` at time `now`. The first call after construction has no time base
    /// and therefore allows no change; a clock that goes backwards also allows none.
    #[must_use]
    pub fn step(&mut self, target: Watts, now: Millis) -> Watts {
        let dt = self.last.map_or(Millis::ZERO, |last| now.since(last));
        self.last = Some(now);
        let max = self.rate.max_step(dt);
        let delta = (target - self.output).clamp(-max, max);
        self.output += delta;
        self.output
    }

    /// Step toward `target` at `rate` instead of the ramper's own (`None`: no limit, the
    /// output jumps to the target — a grid service's step). Same time base as [`Self::step`].
    #[must_use]
    pub fn step_at(&mut self, target: Watts, now: Millis, rate: Option<RampRate>) -> Watts {
        let dt = self.last.map_or(Millis::ZERO, |last| now.since(last));
        self.last = Some(now);
        self.output = match rate {
            Some(rate) => {
                let max = rate.max_step(dt);
                self.output + (target - self.output).clamp(-max, max)
            }
            None => target,
        };
        self.output
    }

    /// Output zero and restart the time base at `now` (used while not RUNNING, so the first
    /// cycle in RUNNING ramps from zero over one cycle, not over the whole idle time).
    pub fn hold_zero(&mut self, now: Millis) {
        self.output = Watts::ZERO;
        self.last = Some(now);
    }

    /// Force the output to a value (used after the final clamp cut it toward zero, so the next
    /// ramp starts from what was really commanded).
    pub fn set_output(&mut self, value: Watts) {
        self.output = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_at_the_rate() {
        let mut r = PowerRamper::new(RampRate::per_second(ems_core::watts!(1000.0)));
        assert_eq!(r.step(ems_core::watts!(5000.0), Millis::ZERO), Watts::ZERO);
        assert_eq!(r.step(ems_core::watts!(5000.0), Millis::new(500)), ems_core::watts!(500.0));
        assert_eq!(r.step(ems_core::watts!(5000.0), Millis::new(1500)), ems_core::watts!(1500.0));
        assert_eq!(r.step(ems_core::watts!(-5000.0), Millis::new(2500)), ems_core::watts!(500.0));
        assert_eq!(r.step(ems_core::watts!(600.0), Millis::new(3500)), ems_core::watts!(600.0));
    }

    #[test]
    fn clock_going_backwards_allows_no_step() {
        let mut r = PowerRamper::new(RampRate::per_second(ems_core::watts!(1000.0)));
        let _ = r.step(Watts::ZERO, Millis::new(10_000));
        assert_eq!(r.step(ems_core::watts!(5000.0), Millis::new(5_000)), Watts::ZERO);
    }
}
