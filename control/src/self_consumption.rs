//! Self-consumption / zero export: the battery follows a grid set-point (default 0 W).
//!
//! The battery charges from what would otherwise be exported and discharges to cover what would
//! otherwise be imported, so the grid meter stays at [`SelfConsumptionConfig::grid_setpoint`].
//!
//! The loop (shared with peak shaving and the self-consumption slots of a plan; details in
//! `control/README.md`, "Grid-following loop"):
//!
//! * **feed-forward** from the meter balance: the grid power with the battery idle is
//!   `grid + battery`, so the set-point that puts the grid at the target is
//!   `grid + battery − target`. It does not depend on how far the battery has got, so ramping
//!   and lag wind nothing up and a load step does not overshoot;
//! * a **first-order filter** (300 ms, per-cycle gain ≤ 0.25) on the proposal, which keeps the
//!   loop stable when the meter is read a cycle later than the inverter and smooths meter noise;
//! * an **integral trim** (the "I" of a PI whose P gain is zero on purpose) that removes the
//!   small steady offset between the inverter's power reading and the meter; it integrates
//!   only while the battery is where the loop asked it to be, so a ramp, a clamp, an override
//!   or the reserve never wind it up.
//!
//! It settles a load step in the time the ramp allows plus about a second, without overshoot
//! beyond one ramp step (`control/tests/closed_loop.rs`). Discharging stops at the SOC reserve
//! and resumes one percentage point above it; optional power limits bound the mode's own
//! proposal (the envelope bounds the command in any case).

use crate::proposal::{ModeError, Proposal, ProposalReason};
use crate::tracking::{Bound, Follow, GridTracker, ReserveLatch, Track};
use ems_core::{Millis, Percent, Snapshot, Watts};

/// Settings of self-consumption mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelfConsumptionConfig {
    /// The grid power to hold (`+` import / `−` export). 0 W is zero export and zero import;
    /// a small positive value (e.g. 50 W) keeps a margin against accidental export.
    pub grid_setpoint: Watts,
    /// No discharge at or below this SOC; discharging resumes one percentage point above it.
    /// Charging is not affected.
    pub reserve_soc: Percent,
    /// Largest charge power the mode proposes (magnitude, ≥ 0); `None` = only the envelope.
    pub max_charge: Option<Watts>,
    /// Largest discharge power the mode proposes (magnitude, ≥ 0); `None` = only the envelope.
    pub max_discharge: Option<Watts>,
}

impl Default for SelfConsumptionConfig {
    /// Zero grid exchange, 10 % reserve, no limits beyond the envelope.
    fn default() -> Self {
        Self {
            grid_setpoint: Watts::ZERO,
            reserve_soc: ems_core::percent!(10.0),
            max_charge: None,
            max_discharge: None,
        }
    }
}

impl SelfConsumptionConfig {
    /// Check the settings: the power limits are magnitudes (≥ 0). (A `Watts` is finite by
    /// construction, so NaN cannot reach here.)
    ///
    /// # Errors
    /// [`ModeError`] when a power limit is negative.
    pub fn validate(&self) -> Result<(), ModeError> {
        for (field, value) in [("max_charge", self.max_charge), ("max_discharge", self.max_discharge)] {
            if let Some(v) = value {
                if v < Watts::ZERO {
                    return Err(ModeError::NegativeLimit { mode: "self-consumption", field, value: v });
                }
            }
        }
        Ok(())
    }
}

/// The running loop of self-consumption (also used for the self-consumption slots of a plan).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SelfConsumption {
    tracker: GridTracker,
    reserve: ReserveLatch,
}

impl SelfConsumption {
    /// Forget the loop state.
    pub(crate) fn reset(&mut self) {
        self.tracker.reset();
        self.reserve.reset();
    }

    /// One cycle. The SOC reserve is `reserve`, not `cfg.reserve_soc` (the mode passes its own,
    /// a plan slot the default mode's); `None` = no reserve (then SOC is not needed). `follow`
    /// says what became of the previous proposal (anti-windup of the trim, see `tracking`).
    pub(crate) fn propose(
        &mut self,
        cfg: &SelfConsumptionConfig,
        reserve: Option<Percent>,
        now: Millis,
        dt: Millis,
        s: &Snapshot,
        follow: Follow,
    ) -> Proposal {
        let (Some(grid), Some(battery)) =
            (s.grid.active_power.value_at(now), s.inverter.active_power.value_at(now))
        else {
            // The reserve latch is kept: it depends on SOC only.
            self.tracker.reset();
            return Proposal { setpoint: Watts::ZERO, reason: ProposalReason::SignalUnavailable };
        };
        let blocked = match reserve {
            None => false,
            Some(r) => match s.battery.soc.value_at(now) {
                Some(soc) => self.reserve.update(soc, r),
                // Without the SOC the reserve cannot be kept: no discharge, charging still fine.
                None => true,
            },
        };
        let mode_hi = cfg.max_discharge.unwrap_or(Watts::MAX);
        let hi = if blocked { Watts::ZERO } else { mode_hi };
        let lo = -cfg.max_charge.unwrap_or(Watts::MAX);
        let (setpoint, bound) =
            self.tracker.track(Track { target: cfg.grid_setpoint, grid, battery, dt, lo, hi, follow });
        let reason = match bound {
            None => ProposalReason::SelfConsumption,
            Some(Bound::High) if blocked => ProposalReason::SocReserve,
            Some(Bound::High | Bound::Low) => ProposalReason::ModePowerLimit,
        };
        Proposal { setpoint, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::snap;

    fn run(sc: &mut SelfConsumption, cfg: &SelfConsumptionConfig, s: &Snapshot) -> Proposal {
        sc.propose(cfg, Some(cfg.reserve_soc), Millis::ZERO, Millis::new(100), s, Follow::Commanded)
    }

    #[test]
    fn charges_surplus_and_covers_import() {
        let cfg = SelfConsumptionConfig::default();
        let mut sc = SelfConsumption::default();
        let p = run(&mut sc, &cfg, &snap(50.0, -2000.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (ems_core::watts!(-2000.0), ProposalReason::SelfConsumption));
        let mut sc = SelfConsumption::default();
        assert_eq!(run(&mut sc, &cfg, &snap(50.0, 1500.0, 0.0)).setpoint, ems_core::watts!(1500.0));
    }

    #[test]
    fn follows_a_nonzero_grid_setpoint() {
        let cfg = SelfConsumptionConfig {
            grid_setpoint: ems_core::watts!(100.0),
            ..SelfConsumptionConfig::default()
        };
        let mut sc = SelfConsumption::default();
        // Importing 1 kW with the battery discharging 500 W: load − PV = 1.5 kW → 1.4 kW.
        assert_eq!(run(&mut sc, &cfg, &snap(50.0, 1000.0, 500.0)).setpoint, ems_core::watts!(1400.0));
    }

    #[test]
    fn reserve_blocks_discharge_with_hysteresis_but_not_charge() {
        let cfg = SelfConsumptionConfig {
            reserve_soc: ems_core::percent!(20.0),
            ..SelfConsumptionConfig::default()
        };
        let mut sc = SelfConsumption::default();
        let p = run(&mut sc, &cfg, &snap(20.0, 1500.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (Watts::ZERO, ProposalReason::SocReserve));
        let p = run(&mut sc, &cfg, &snap(20.5, 1500.0, 0.0));
        assert_eq!(p.setpoint, Watts::ZERO);
        assert!(run(&mut sc, &cfg, &snap(20.5, -1500.0, 0.0)).setpoint < Watts::ZERO);
        let mut sc = SelfConsumption::default();
        let _ = run(&mut sc, &cfg, &snap(20.0, 1500.0, 0.0));
        assert!(run(&mut sc, &cfg, &snap(21.0, 1500.0, 0.0)).setpoint > Watts::ZERO);
    }

    #[test]
    fn unknown_soc_blocks_discharge_only() {
        let cfg = SelfConsumptionConfig::default();
        let mut s = snap(50.0, 1500.0, 0.0);
        s.battery.soc.invalidate();
        let mut sc = SelfConsumption::default();
        assert_eq!(run(&mut sc, &cfg, &s).setpoint, Watts::ZERO);
        let mut s = snap(50.0, -1500.0, 0.0);
        s.battery.soc.invalidate();
        let mut sc = SelfConsumption::default();
        assert_eq!(run(&mut sc, &cfg, &s).setpoint, ems_core::watts!(-1500.0));
    }

    #[test]
    fn mode_limits_bound_the_proposal() {
        let cfg = SelfConsumptionConfig {
            max_charge: Some(ems_core::watts!(1000.0)),
            max_discharge: Some(ems_core::watts!(800.0)),
            ..SelfConsumptionConfig::default()
        };
        let mut sc = SelfConsumption::default();
        let p = run(&mut sc, &cfg, &snap(50.0, -3000.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (ems_core::watts!(-1000.0), ProposalReason::ModePowerLimit));
        let mut sc = SelfConsumption::default();
        assert_eq!(run(&mut sc, &cfg, &snap(50.0, 3000.0, 0.0)).setpoint, ems_core::watts!(800.0));
    }

    #[test]
    fn lost_meter_proposes_zero() {
        let mut s = snap(50.0, -2000.0, 0.0);
        s.grid.active_power.invalidate();
        let mut sc = SelfConsumption::default();
        let p = run(&mut sc, &SelfConsumptionConfig::default(), &s);
        assert_eq!((p.setpoint, p.reason), (Watts::ZERO, ProposalReason::SignalUnavailable));
    }

    #[test]
    fn negative_limits_are_refused_naming_the_field() {
        let cfg = SelfConsumptionConfig {
            max_discharge: Some(ems_core::watts!(-1.0)),
            ..SelfConsumptionConfig::default()
        };
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("'max_discharge'"), "{e}");
        assert!(e.to_string().contains("-1"), "{e}");
    }
}
