//! The grid-following core shared by self-consumption, peak shaving and plan slots, and the SOC
//! reserve latch.
//!
//! # How the grid is followed
//!
//! The meter balance gives the grid power the site would have with the battery idle:
//! `grid + battery` (load − PV, design.md §4 signs). The battery set-point that puts the grid
//! at `target` is therefore `grid + battery − target` — a feed-forward that does not depend on
//! how far the battery has got: while the battery ramps or lags, the balance stays right, so a
//! load step or a PV cloud does not wind anything up and nothing overshoots.
//!
//! Two additions make it robust on a real site:
//!
//! * **A first-order filter** ([`FILTER_TAU`], per-cycle gain at most [`FILTER_MAX_GAIN`]) on
//!   the proposal. Without it, a grid meter that is read one cycle later than the inverter, on
//!   a battery that follows its command within a cycle, turns the feed-forward into
//!   `c[k] = L + c[k−1] − c[k−2]`, whose poles lie *on* the unit circle: a sustained six-cycle
//!   oscillation (`control/tests/closed_loop.rs` reproduces it when the filter is removed).
//!   With a per-cycle gain `K` the loop becomes `c[k] = c[k−1] + K·(L − c[k−2])`, critically
//!   damped at `K = 0.25` (300 ms at a 100 ms cycle) and overdamped below; the gain is capped
//!   there for longer cycles because the skew is one *cycle*, whatever its length. Meter noise
//!   is smoothed too; the price is about 0.3 s of extra delay, small next to the ramp limit.
//! * **An integral trim** on the grid error (the "I" of the PI; the proportional gain is zero
//!   on purpose: the feed-forward already has a loop gain of one, a P term on top of it only
//!   makes the loop alternate around the target when the plant lags). It removes the steady
//!   offset left when the inverter's own power reading disagrees with what the meter sees.
//!
//! # Anti-windup (issue #10)
//!
//! The trim integrates in a cycle only if all of these held for the previous proposal:
//!
//! 1. **it was commanded as it was** ([`Follow::Commanded`], from the controller's own record
//!    of the previous cycle, see [`crate::modes::Feedback`]): the controller was RUNNING, the
//!    mode (not an override, the plan or a grid service) set the request, and neither the ramp
//!    nor the envelope changed it on the way to the command;
//! 2. **the battery got there**: its power reading is within 50 W + 5 % of the proposal (the
//!    inverter's own lag, a device layer that clamped the write);
//! 3. **it was not cut by the caller's bounds** (mode limits, the SOC reserve, the no-discharge
//!    bound of charge-only).
//!
//! This is *conditional integration* (clamping), not back-calculation from the commanded value:
//! the loop is a feed-forward that carries the whole meter balance plus a small bounded trim.
//! When the command is cut, what is missing is feed-forward, not trim; back-calculating the
//! trim from the commanded value would load that shortfall into the trim (to its ±500 W bound)
//! and the overshoot would come from the other side. Holding the trim keeps the offset it has
//! learnt, which is still right once the battery follows again.
//!
//! Outside RUNNING the trim is **held too, not reset**: what it learnt (a CT error, an inverter
//! reading a few tens of watts off) belongs to the installation and is still right after a stop,
//! an E-stop or a trip; a reset would import (or export) that offset after every restart for as
//! long as it takes to learn it again (`control/tests/anti_windup.rs`: 62 W above the target
//! after a restart with a 60 W offset when reset, none when held). It is reset where what it
//! learnt is void: a lost signal, a mode change (a new [`crate::Mode`]), a new peak-shaving
//! regime, the SOC target of charge-only.

use ems_core::{Millis, Percent, Watts};

/// Time constant of the proposal filter.
pub(crate) const FILTER_TAU: Millis = Millis::new(300);
/// Largest per-cycle filter gain (critical damping with a one-cycle meter skew).
pub(crate) const FILTER_MAX_GAIN: f32 = 0.25;
/// Integral gain of the trim, per second (the trim removes an offset with a 5 s time constant).
const TRIM_KI_PER_S: f32 = 0.2;
/// The trim corrects measurement offsets, not the balance: it is bounded.
const TRIM_LIMIT: Watts = ems_core::watts!(500.0);
/// The error the trim integrates is bounded to this.
pub(crate) const TRIM_ERROR_LIMIT: Watts = ems_core::watts!(200.0);
/// "The battery is where it was asked to be": within this many watts …
const TRACKING_TOLERANCE: Watts = ems_core::watts!(50.0);
/// … plus this fraction of the set-point.
const TRACKING_FRACTION: f32 = 0.05;
/// Percentage points above the reserve at which discharging is allowed again.
pub(crate) const RESERVE_HYSTERESIS: f32 = 1.0;

/// What became of the loop's previous proposal, as the controller knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    /// It was commanded as proposed (or the caller applies proposals directly): the trim may
    /// integrate, subject to the battery reading and the bounds.
    Commanded,
    /// The controller was not RUNNING, or something else set or changed the command (an
    /// override, the plan, a grid service, the ramp, the envelope, an E-stop demand): the trim
    /// is held.
    Held,
}

/// Whether a battery reading shows the battery where it was asked to be (`proposed`).
pub(crate) fn battery_at(battery: Watts, proposed: Watts) -> bool {
    (battery - proposed).abs() <= TRACKING_TOLERANCE + proposed.abs().scale(TRACKING_FRACTION)
}

/// Which of the caller's bounds cut the filtered proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// The lower bound (the charge limit).
    Low,
    /// The upper bound (the discharge limit).
    High,
}

/// One cycle's inputs to [`GridTracker::track`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Track {
    /// Wanted grid power (`+` import).
    pub target: Watts,
    /// Measured grid power.
    pub grid: Watts,
    /// Measured battery power (`+` discharge).
    pub battery: Watts,
    /// Time since the previous cycle.
    pub dt: Millis,
    /// Lowest set-point allowed (≤ 0: the largest charge).
    pub lo: Watts,
    /// Highest set-point allowed (≥ 0: the largest discharge).
    pub hi: Watts,
    /// What became of the previous proposal.
    pub follow: Follow,
}

/// Feed-forward from the meter balance, filtered, plus a gated integral trim.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct GridTracker {
    /// The previous proposal (the filter state), `None` after a reset.
    last: Option<Watts>,
    /// Whether the previous proposal was cut by a bound (no trim integration next cycle).
    saturated: bool,
    integral: Watts,
}

impl GridTracker {
    /// Forget everything (the next proposal is the unfiltered feed-forward).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// The caller proposed zero without the tracker (idle, reserve, signal lost): restart the
    /// filter from zero and skip trim integration in the next cycle. The trim is kept.
    pub(crate) fn idle(&mut self) {
        self.last = Some(Watts::ZERO);
        self.saturated = true;
    }

    /// Forget the trim only (the caller changed what it tracks).
    pub(crate) fn reset_trim(&mut self) {
        self.integral = Watts::ZERO;
        self.saturated = true;
    }

    /// The set-point for this cycle and the bound that cut it, if any.
    pub(crate) fn track(&mut self, t: Track) -> (Watts, Option<Bound>) {
        let error = t.grid - t.target;
        let tracking = match self.last {
            Some(prev) if !self.saturated && t.follow == Follow::Commanded => battery_at(t.battery, prev),
            Some(_) | None => false,
        };
        if tracking {
            // Importing more than wanted (error > 0) means discharge a little more. The error
            // is bounded first: in the cycle a disturbance arrives the battery is still where it
            // was asked to be, and that one large error is the feed-forward's job, not an
            // offset to remember.
            let bounded = error.clamp(-TRIM_ERROR_LIMIT, TRIM_ERROR_LIMIT);
            let step = bounded.scale(TRIM_KI_PER_S * t.dt.as_secs_f32());
            self.integral = (self.integral + step).clamp(-TRIM_LIMIT, TRIM_LIMIT);
        }
        let raw = t.grid + t.battery - t.target + self.integral;
        let (lo, hi) = if t.lo <= t.hi { (t.lo, t.hi) } else { (t.hi, t.lo) };
        let filtered = match self.last {
            // The filter restarts from inside this cycle's bounds (a regime or a reserve just
            // changed them), so it does not first have to travel back from outside.
            Some(prev) => {
                let prev = prev.clamp(lo, hi);
                prev + (raw - prev).scale(filter_gain(t.dt))
            }
            None => raw,
        };
        let out = filtered.clamp(lo, hi);
        let bound = if filtered > hi {
            Some(Bound::High)
        } else if filtered < lo {
            Some(Bound::Low)
        } else {
            None
        };
        self.last = Some(out);
        self.saturated = bound.is_some();
        (out, bound)
    }
}

/// `dt / (τ + dt)`, at most [`FILTER_MAX_GAIN`]: zero for a zero step (nothing moves without
/// time).
fn filter_gain(dt: Millis) -> f32 {
    let dt_s = dt.as_secs_f32();
    let tau_s = FILTER_TAU.as_secs_f32();
    let gain = if dt_s + tau_s > 0.0 { dt_s / (tau_s + dt_s) } else { FILTER_MAX_GAIN };
    gain.min(FILTER_MAX_GAIN)
}

/// "No discharge below the reserve", with [`RESERVE_HYSTERESIS`] so the battery does not
/// chatter at the reserve: blocked at or below it, released one point above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReserveLatch {
    blocked: bool,
}

impl ReserveLatch {
    /// Update with this cycle's SOC; returns whether discharging is blocked.
    pub(crate) fn update(&mut self, soc: Percent, reserve: Percent) -> bool {
        if soc <= reserve {
            self.blocked = true;
        } else if soc.get() >= reserve.get() + RESERVE_HYSTERESIS {
            self.blocked = false;
        }
        self.blocked
    }

    /// Forget the latch.
    pub(crate) fn reset(&mut self) {
        self.blocked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(grid: f32, battery: f32) -> Track {
        Track {
            target: Watts::ZERO,
            grid: Watts::saturating(grid),
            battery: Watts::saturating(battery),
            dt: Millis::new(100),
            lo: ems_core::watts!(-5000.0),
            hi: ems_core::watts!(5000.0),
            follow: Follow::Commanded,
        }
    }

    #[test]
    fn first_proposal_is_the_balance_then_it_is_filtered() {
        let mut g = GridTracker::default();
        // Importing 2 kW with the battery idle: discharge 2 kW.
        assert_eq!(g.track(t(2000.0, 0.0)).0, ems_core::watts!(2000.0));
        // The load drops by 1 kW: the proposal moves toward 1 kW, not all the way at once.
        let (p, _) = g.track(t(1000.0, 0.0));
        assert!(p.get() > 1000.0 && p.get() < 2000.0, "{p}");
    }

    #[test]
    fn bounds_cut_and_report() {
        let mut g = GridTracker::default();
        let mut tr = t(2000.0, 0.0);
        tr.hi = Watts::ZERO;
        assert_eq!(g.track(tr), (Watts::ZERO, Some(Bound::High)));
    }

    #[test]
    fn trim_removes_an_offset_and_does_not_wind_up_while_saturated() {
        let mut g = GridTracker::default();
        // The inverter delivers its set-point but reads 60 W more than it delivers (the
        // feed-forward alone would leave 60 W of export). Load 1000 W.
        let mut cmd = Watts::ZERO;
        for _ in 0..600 {
            let reading = cmd + ems_core::watts!(60.0);
            let grid = ems_core::watts!(1000.0) - cmd;
            cmd = g.track(t(grid.get(), reading.get())).0;
        }
        let grid = ems_core::watts!(1000.0) - cmd;
        assert!(grid.abs() < ems_core::watts!(5.0), "steady grid {grid}");

        let mut g = GridTracker::default();
        for _ in 0..600 {
            let mut tr = t(3000.0, 0.0);
            tr.hi = Watts::ZERO;
            let _ = g.track(tr);
        }
        assert_eq!(g.integral, Watts::ZERO);
    }

    #[test]
    fn trim_holds_while_the_command_is_not_the_proposal() {
        // Learn a 60 W offset first (as above).
        let mut g = GridTracker::default();
        let mut cmd = Watts::ZERO;
        for _ in 0..600 {
            let grid = ems_core::watts!(1000.0) - cmd;
            cmd = g.track(t(grid.get(), (cmd + ems_core::watts!(60.0)).get())).0;
        }
        let learnt = g.integral;
        assert!(learnt.abs() > ems_core::watts!(40.0), "{learnt}");
        // The battery reads exactly the proposal, but an override/ramp set the command: the
        // large grid error it sees is not this loop's doing and must not be integrated.
        for _ in 0..600 {
            let p = g.last.unwrap_or(Watts::ZERO);
            let _ = g.track(Track { follow: Follow::Held, ..t(-2500.0, p.get()) });
        }
        assert_eq!(g.integral, learnt);
    }

    #[test]
    fn reserve_latch_has_hysteresis() {
        let mut r = ReserveLatch::default();
        let res = ems_core::percent!(20.0);
        assert!(!r.update(ems_core::percent!(25.0), res));
        assert!(r.update(ems_core::percent!(20.0), res));
        assert!(r.update(ems_core::percent!(20.9), res));
        assert!(!r.update(ems_core::percent!(21.0), res));
    }
}
