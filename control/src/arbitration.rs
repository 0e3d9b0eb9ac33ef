//! Mode arbitration: who sets the battery set-point this cycle.
//!
//! # The rule
//!
//! Layers by priority, highest first:
//!
//! 1. **Safety** — the envelope, the state machine and the final clamp
//!    ([`crate::clamp::final_clamp`]). Not a proposer: it bounds whatever the layers below
//!    produced, and [`crate::Output::binding`] names the constraint when it changed the value.
//!    Outside RUNNING nothing proposes at all ([`CommandSource::NotRunning`]).
//! 2. **Grid services** ([`crate::Inputs::grid_service`]): when present it *is* the set-point;
//!    overrides, the plan and the mode do not touch it.
//! 3. **Operator / API overrides** ([`crate::Inputs::ess_override`], [`Override`]): they
//!    *modify* what the plan or the mode proposed — `NO_DISCHARGE` clamps it to ≤ 0,
//!    `LIMIT_CHARGE` bounds the charge magnitude, `LIMIT_DISCHARGE` bounds the discharge,
//!    `FORCE_CHARGE` replaces it by `−power`. The source is the override only if it changed the
//!    value (or forces it); a limit that does not bind leaves the source with the layer below.
//!    An invalid override (a negative power) is ignored and reported in
//!    [`crate::Output::override_refused`]; the layers below and safety still apply.
//! 4. **Plan** ([`crate::Inputs::plan`], [`PlanTarget`]): the current slot of a day-ahead
//!    plan replaces the mode's proposal (execution policy below).
//! 5. **Default mode** ([`crate::ModeSetting`]).
//!
//! Lifetimes, watchdogs and `until` of overrides live in the API layer: the controller applies
//! whatever it is given in each cycle and forgets it in the next.
//!
//! # Plan execution policy
//!
//! A slot with `|grid| ≤` [`PLAN_GRID_TOLERANCE`] whose planned battery power lies strictly
//! inside this cycle's envelope is a **self-consumption slot**: the plan expected the battery
//! to balance the site, so the controller follows grid = 0 with the self-consumption loop, which
//! absorbs the forecast error (more load, a cloud) instead of importing or exporting it. Any
//! other slot (planned grid charging, discharging for export, a battery planned at its limit)
//! is a **hold slot**: the planned battery power is proposed, but the battery never moves the
//! grid to the other side of what the plan expected — a slot planned without import
//! (`grid ≤ 0`) charges at most from the surplus there is (a cloud must not turn a planned
//! PV charge into a grid charge), and a slot planned without export (`grid ≥ 0`) discharges at
//! most into the site's own load (a load drop must not turn a planned discharge into export).
//! Charging from the grid and discharging into the grid happen only where the plan says so.
//!
//! SOC reserve: if the default mode keeps one ([`crate::ModeSetting::reserve_soc`]:
//! self-consumption and peak shaving), plan slots of both kinds do not discharge at or below it
//! (with the same 1-point hysteresis); with any other default mode the plan discharges until the
//! envelope stops it (SOC-low alarm). The reserve is the operator's promise (backup energy,
//! energy kept for demand peaks) that a plan computed elsewhere may not know about; the envelope
//! remains the hard limit either way.

use crate::modes::{Feedback, Proposal, ProposalReason};
use crate::self_consumption::{SelfConsumption, SelfConsumptionConfig};
use crate::tracking::ReserveLatch;
use core::fmt;
use ems_core::{Millis, Percent, Snapshot, Watts};
use ems_safety::Envelope;

/// A plan slot with `|grid|` at most this is a self-consumption slot.
pub const PLAN_GRID_TOLERANCE: Watts = ems_core::watts!(1.0);

/// An operator/API control-mode override of the battery (the OpenEMS control-mode proposal,
/// design.md §7). Powers are magnitudes in watts (≥ 0; check with [`Override::validate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Override {
    /// `NO_DISCHARGE`: the battery may charge or idle, never discharge.
    NoDischarge,
    /// `LIMIT_CHARGE {maxChargePower}`: charge at most this much.
    LimitCharge {
        /// Largest charge power (≥ 0).
        max_charge_power: Watts,
    },
    /// `LIMIT_DISCHARGE {maxDischargePower}`: discharge at most this much.
    LimitDischarge {
        /// Largest discharge power (≥ 0).
        max_discharge_power: Watts,
    },
    /// `FORCE_CHARGE {power}`: charge at this power, whatever the plan or mode say (the envelope
    /// still bounds it).
    ForceCharge {
        /// Charge power (≥ 0).
        power: Watts,
    },
}

/// Which override, without its parameter (for [`CommandSource`] and audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideKind {
    /// `NO_DISCHARGE`.
    NoDischarge,
    /// `LIMIT_CHARGE`.
    LimitCharge,
    /// `LIMIT_DISCHARGE`.
    LimitDischarge,
    /// `FORCE_CHARGE`.
    ForceCharge,
}

impl fmt::Display for OverrideKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoDischarge => "NO_DISCHARGE",
            Self::LimitCharge => "LIMIT_CHARGE",
            Self::LimitDischarge => "LIMIT_DISCHARGE",
            Self::ForceCharge => "FORCE_CHARGE",
        })
    }
}

/// An override refused by [`Override::validate`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("override {kind}: field '{field}' = {value} must be >= 0 W")]
pub struct OverrideError {
    /// Which override.
    pub kind: OverrideKind,
    /// The field (`max_charge_power`, `max_discharge_power`, `power`).
    pub field: &'static str,
    /// The rejected value.
    pub value: Watts,
}

impl Override {
    /// Which override this is.
    #[must_use]
    pub const fn kind(&self) -> OverrideKind {
        match self {
            Self::NoDischarge => OverrideKind::NoDischarge,
            Self::LimitCharge { .. } => OverrideKind::LimitCharge,
            Self::LimitDischarge { .. } => OverrideKind::LimitDischarge,
            Self::ForceCharge { .. } => OverrideKind::ForceCharge,
        }
    }

    /// Check the override: every power is a magnitude (≥ 0). NaN and ±inf cannot reach here:
    /// a [`Watts`] is finite by construction (`Watts::try_new` refuses them at the API edge).
    pub fn validate(&self) -> Result<(), OverrideError> {
        let (field, value) = match *self {
            Self::NoDischarge => return Ok(()),
            Self::LimitCharge { max_charge_power } => ("max_charge_power", max_charge_power),
            Self::LimitDischarge { max_discharge_power } => ("max_discharge_power", max_discharge_power),
            Self::ForceCharge { power } => ("power", power),
        };
        if value < Watts::ZERO {
            return Err(OverrideError { kind: self.kind(), field, value });
        }
        Ok(())
    }

    /// Apply the override to a proposed set-point (`+` discharge / `−` charge). Assumes a
    /// validated override; an invalid one is not applied by the controller.
    #[must_use]
    pub fn apply(&self, setpoint: Watts) -> Watts {
        match *self {
            Self::NoDischarge => setpoint.min(Watts::ZERO),
            Self::LimitCharge { max_charge_power } => setpoint.max(-max_charge_power.abs()),
            Self::LimitDischarge { max_discharge_power } => setpoint.min(max_discharge_power.abs()),
            Self::ForceCharge { power } => -power.abs(),
        }
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDischarge => f.write_str("NO_DISCHARGE"),
            Self::LimitCharge { max_charge_power } => write!(f, "LIMIT_CHARGE ({max_charge_power:.0})"),
            Self::LimitDischarge { max_discharge_power } => {
                write!(f, "LIMIT_DISCHARGE ({max_discharge_power:.0})")
            }
            Self::ForceCharge { power } => write!(f, "FORCE_CHARGE ({power:.0})"),
        }
    }
}

/// The current slot of a day-ahead plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanTarget {
    /// Planned net battery power (`+` discharge / `−` charge).
    pub battery: Watts,
    /// Planned grid power (`+` import / `−` export).
    pub grid: Watts,
}

/// The layer that set the set-point handed to the final clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandSource {
    /// Not RUNNING: nothing proposes, the state machine holds zero.
    NotRunning,
    /// The default mode, with its reason.
    Mode(ProposalReason),
    /// The day-ahead plan: [`ProposalReason::SelfConsumption`] in a self-consumption slot,
    /// [`ProposalReason::PlanHold`] in a hold slot, [`ProposalReason::SocReserve`] when the
    /// reserve stopped a planned discharge, [`ProposalReason::SignalUnavailable`].
    Plan(ProposalReason),
    /// An operator/API override changed (or forced) the set-point.
    Override(OverrideKind),
    /// A grid service set the set-point.
    GridService,
}

impl fmt::Display for CommandSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRunning => f.write_str("not RUNNING"),
            Self::Mode(r) => write!(f, "mode: {r}"),
            Self::Plan(r) => write!(f, "plan: {r}"),
            Self::Override(k) => write!(f, "override {k}"),
            Self::GridService => f.write_str("grid service"),
        }
    }
}

/// The set-point chosen by arbitration, before the final clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arbitrated {
    /// The set-point to hand to the final clamp.
    pub setpoint: Watts,
    /// Who set it.
    pub source: CommandSource,
}

/// Arbitrate one cycle (see the module docs for the rule). `ess_override` must have been
/// validated by the caller ([`Override::validate`]); the controller passes `None` for an invalid
/// one.
#[must_use]
pub fn arbitrate(
    mode: Proposal,
    plan: Option<Proposal>,
    ess_override: Option<Override>,
    grid_service: Option<Watts>,
) -> Arbitrated {
    if let Some(setpoint) = grid_service {
        return Arbitrated { setpoint, source: CommandSource::GridService };
    }
    let mut a = match plan {
        Some(p) => Arbitrated { setpoint: p.setpoint, source: CommandSource::Plan(p.reason) },
        None => Arbitrated { setpoint: mode.setpoint, source: CommandSource::Mode(mode.reason) },
    };
    if let Some(o) = ess_override {
        let applied = o.apply(a.setpoint);
        let forced = matches!(o, Override::ForceCharge { .. });
        if forced || applied != a.setpoint {
            a = Arbitrated { setpoint: applied, source: CommandSource::Override(o.kind()) };
        }
    }
    a
}

/// Executes plan slots (policy in the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PlanExecutor {
    self_consumption: SelfConsumption,
    reserve: ReserveLatch,
    last: Option<Millis>,
    in_self_consumption: bool,
    /// The previous proposal (anti-windup of the self-consumption slot's trim).
    last_proposal: Option<Watts>,
}

impl PlanExecutor {
    /// No plan this cycle: forget the loop state, so a later slot starts fresh.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// The proposal for this cycle's plan slot; `feedback` is what the controller did with the
    /// previous cycle's set-point (anti-windup, see [`Feedback`]).
    pub(crate) fn propose(
        &mut self,
        plan: PlanTarget,
        now: Millis,
        snapshot: &Snapshot,
        envelope: &Envelope,
        reserve: Option<Percent>,
        feedback: Option<Feedback>,
    ) -> Proposal {
        let p = self.propose_slot(plan, now, snapshot, envelope, reserve, feedback);
        self.last_proposal = Some(p.setpoint);
        p
    }

    fn propose_slot(
        &mut self,
        plan: PlanTarget,
        now: Millis,
        snapshot: &Snapshot,
        envelope: &Envelope,
        reserve: Option<Percent>,
        feedback: Option<Feedback>,
    ) -> Proposal {
        let dt = self.last.map_or(Millis::ZERO, |l| now.since(l));
        self.last = Some(now);
        let follow = Feedback::follow(feedback, self.last_proposal, |s| matches!(s, CommandSource::Plan(_)));
        let inside = plan.battery > -envelope.max_charge() && plan.battery < envelope.max_discharge();
        if plan.grid.abs() <= PLAN_GRID_TOLERANCE && inside {
            if !self.in_self_consumption {
                self.self_consumption.reset();
                self.in_self_consumption = true;
            }
            // Grid 0 without limits; the reserve is the default mode's, passed as `reserve`
            // (the config's own `reserve_soc` is not read when a reserve is passed separately).
            let cfg = SelfConsumptionConfig {
                grid_setpoint: Watts::ZERO,
                reserve_soc: Percent::ZERO,
                max_charge: None,
                max_discharge: None,
            };
            return self.self_consumption.propose(&cfg, reserve, now, dt, snapshot, follow);
        }
        self.in_self_consumption = false;
        let hold =
            Proposal { setpoint: keep_grid_side(plan, now, snapshot), reason: ProposalReason::PlanHold };
        let Some(r) = reserve else {
            return hold;
        };
        if hold.setpoint <= Watts::ZERO {
            return hold;
        }
        match snapshot.battery.soc.value_at(now) {
            Some(soc) if !self.reserve.update(soc, r) => hold,
            Some(_) => Proposal { setpoint: Watts::ZERO, reason: ProposalReason::SocReserve },
            // A reserve that cannot be checked is not spent.
            None => Proposal { setpoint: Watts::ZERO, reason: ProposalReason::SignalUnavailable },
        }
    }
}

/// The hold slot's battery power, limited so that the battery does not move the grid to the side
/// the plan did not expect (module docs). Without a good grid and battery reading the planned
/// power is held as it is.
fn keep_grid_side(plan: PlanTarget, now: Millis, snapshot: &Snapshot) -> Watts {
    let (Some(grid), Some(battery)) =
        (snapshot.grid.active_power.value_at(now), snapshot.inverter.active_power.value_at(now))
    else {
        return plan.battery;
    };
    // The grid flow with the battery idle (`+` import): the site's net load.
    let net_load = grid + battery;
    let mut b = plan.battery;
    if plan.grid <= Watts::ZERO && b < Watts::ZERO {
        // Charge only from a surplus: grid = net_load − b ≤ 0 ⇔ b ≥ net_load.
        b = b.max(net_load.min(Watts::ZERO));
    }
    if plan.grid >= Watts::ZERO && b > Watts::ZERO {
        // Discharge only into the load: grid ≥ 0 ⇔ b ≤ net_load.
        b = b.min(net_load.max(Watts::ZERO));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::event::Constraint;

    fn p(w: f32, reason: ProposalReason) -> Proposal {
        Proposal { setpoint: Watts::saturating(w), reason }
    }

    fn w(x: f32) -> Watts {
        Watts::saturating(x)
    }

    #[test]
    fn priority_grid_service_over_override_over_plan_over_mode() {
        let mode = p(1000.0, ProposalReason::SelfConsumption);
        let plan = Some(p(-2000.0, ProposalReason::PlanHold));
        let nd = Some(Override::NoDischarge);
        assert_eq!(
            arbitrate(mode, None, None, None).source,
            CommandSource::Mode(ProposalReason::SelfConsumption)
        );
        assert_eq!(
            arbitrate(mode, plan, None, None),
            Arbitrated { setpoint: w(-2000.0), source: CommandSource::Plan(ProposalReason::PlanHold) }
        );
        // NO_DISCHARGE does not bind on a planned charge: the plan stays the source.
        assert_eq!(arbitrate(mode, plan, nd, None).source, CommandSource::Plan(ProposalReason::PlanHold));
        // … but it binds on the mode's discharge.
        assert_eq!(
            arbitrate(mode, None, nd, None),
            Arbitrated { setpoint: Watts::ZERO, source: CommandSource::Override(OverrideKind::NoDischarge) }
        );
        assert_eq!(
            arbitrate(mode, plan, nd, Some(w(3000.0))),
            Arbitrated { setpoint: w(3000.0), source: CommandSource::GridService }
        );
    }

    #[test]
    fn overrides_modify_the_proposal() {
        let lc = Override::LimitCharge { max_charge_power: w(500.0) };
        let ld = Override::LimitDischarge { max_discharge_power: w(700.0) };
        let fc = Override::ForceCharge { power: w(1200.0) };
        assert_eq!(lc.apply(w(-2000.0)), w(-500.0));
        assert_eq!(lc.apply(w(2000.0)), w(2000.0));
        assert_eq!(ld.apply(w(2000.0)), w(700.0));
        assert_eq!(ld.apply(w(-2000.0)), w(-2000.0));
        assert_eq!(fc.apply(w(2000.0)), w(-1200.0));
        assert_eq!(Override::NoDischarge.apply(w(10.0)), Watts::ZERO);
        let mode = p(-100.0, ProposalReason::SelfConsumption);
        assert_eq!(
            arbitrate(mode, None, Some(fc), None).source,
            CommandSource::Override(OverrideKind::ForceCharge)
        );
    }

    #[test]
    fn negative_override_powers_are_refused_naming_the_field() {
        let e = Override::LimitCharge { max_charge_power: w(-5.0) }.validate().unwrap_err();
        assert_eq!(e.field, "max_charge_power");
        assert_eq!(e.to_string(), "override LIMIT_CHARGE: field 'max_charge_power' = -5.0 W must be >= 0 W");
        assert_eq!(Override::ForceCharge { power: w(-1.0) }.validate().unwrap_err().field, "power");
        assert_eq!(
            Override::LimitDischarge { max_discharge_power: w(-1.0) }.validate().unwrap_err().field,
            "max_discharge_power"
        );
        assert!(Override::NoDischarge.validate().is_ok());
        assert!(Override::ForceCharge { power: Watts::ZERO }.validate().is_ok());
    }

    #[test]
    fn display_speaks_the_operators_language() {
        assert_eq!(CommandSource::Override(OverrideKind::NoDischarge).to_string(), "override NO_DISCHARGE");
        assert_eq!(CommandSource::Plan(ProposalReason::PlanHold).to_string(), "plan: planned battery power");
        assert_eq!(CommandSource::Mode(ProposalReason::PeakShaving).to_string(), "mode: peak shaving");
        assert_eq!(Override::ForceCharge { power: w(3000.0) }.to_string(), "FORCE_CHARGE (3000 W)");
    }

    use crate::test_support::snap;

    fn env() -> Envelope {
        Envelope::new(w(5000.0))
    }

    #[test]
    fn hold_slots_keep_the_grid_on_the_planned_side() {
        let mut x = PlanExecutor::default();
        let hold = |x: &mut PlanExecutor, plan, s: &Snapshot| {
            x.propose(plan, Millis::ZERO, s, &env(), None, None).setpoint
        };
        // Planned: PV charge of 2 kW while exporting 1.5 kW. A cloud leaves 300 W of surplus
        // (battery idle: grid −300 W): charge only those 300 W, never from the grid.
        let pv_charge = PlanTarget { battery: w(-2000.0), grid: w(-1500.0) };
        assert_eq!(hold(&mut x, pv_charge, &snap(50.0, -300.0, 0.0)), w(-300.0));
        // Same while the battery already charges 2 kW and the grid shows +1.7 kW import.
        assert_eq!(hold(&mut x, pv_charge, &snap(50.0, 1700.0, -2000.0)), w(-300.0));
        // No surplus at all: stop charging.
        assert_eq!(hold(&mut x, pv_charge, &snap(50.0, 800.0, 0.0)), Watts::ZERO);
        // Enough surplus: the planned power.
        assert_eq!(hold(&mut x, pv_charge, &snap(50.0, -3500.0, 0.0)), w(-2000.0));
        // Planned: discharge 2 kW into a 2.5 kW load (import 500 W). The load drops to 800 W:
        // discharge only 800 W, never into the grid.
        let cover = PlanTarget { battery: w(2000.0), grid: w(500.0) };
        assert_eq!(hold(&mut x, cover, &snap(50.0, 800.0, 0.0)), w(800.0));
        // Planned grid charging and planned export stay as planned.
        let grid_charge = PlanTarget { battery: w(-3000.0), grid: w(3500.0) };
        assert_eq!(hold(&mut x, grid_charge, &snap(50.0, 500.0, 0.0)), w(-3000.0));
        let export = PlanTarget { battery: w(3000.0), grid: w(-2500.0) };
        assert_eq!(hold(&mut x, export, &snap(50.0, 500.0, 0.0)), w(3000.0));
        // Without a grid reading the planned power is held.
        let mut s = snap(50.0, 0.0, 0.0);
        s.grid.active_power.invalidate();
        assert_eq!(hold(&mut x, pv_charge, &s), w(-2000.0));
    }

    #[test]
    fn plan_self_consumption_slot_absorbs_forecast_error() {
        let mut x = PlanExecutor::default();
        // Planned: battery covers 1 kW of load, grid 0. Actual: 1.8 kW import with the battery
        // idle → the loop discharges 1.8 kW, not the planned 1 kW.
        let plan = PlanTarget { battery: w(1000.0), grid: Watts::ZERO };
        let pr = x.propose(plan, Millis::ZERO, &snap(50.0, 1800.0, 0.0), &env(), None, None);
        assert_eq!((pr.setpoint, pr.reason), (w(1800.0), ProposalReason::SelfConsumption));
    }

    #[test]
    fn plan_hold_slots_hold_the_planned_power() {
        let mut x = PlanExecutor::default();
        // Grid charging: 3 kW planned import.
        let plan = PlanTarget { battery: w(-2500.0), grid: w(3000.0) };
        let pr = x.propose(
            plan,
            Millis::ZERO,
            &snap(50.0, 500.0, 0.0),
            &env(),
            Some(ems_core::percent!(20.0)),
            None,
        );
        assert_eq!((pr.setpoint, pr.reason), (w(-2500.0), ProposalReason::PlanHold));
        // Grid 0 but the battery planned at the envelope limit: hold as well — limited to the
        // 500 W load, since the plan expected no export.
        let plan = PlanTarget { battery: w(5000.0), grid: Watts::ZERO };
        let pr = x.propose(plan, Millis::ZERO, &snap(50.0, 500.0, 0.0), &env(), None, None);
        assert_eq!((pr.setpoint, pr.reason), (w(500.0), ProposalReason::PlanHold));
        let pr = x.propose(plan, Millis::ZERO, &snap(50.0, 6000.0, 0.0), &env(), None, None);
        assert_eq!((pr.setpoint, pr.reason), (w(5000.0), ProposalReason::PlanHold));
        let mut shrunk = env();
        shrunk.limit_discharge(w(1000.0), Constraint::BmsLimit);
        let plan = PlanTarget { battery: w(1000.0), grid: Watts::ZERO };
        assert_eq!(
            x.propose(plan, Millis::ZERO, &snap(50.0, 500.0, 0.0), &shrunk, None, None).reason,
            ProposalReason::PlanHold
        );
    }

    #[test]
    fn plan_discharge_respects_the_default_modes_reserve_only_if_it_has_one() {
        let export = PlanTarget { battery: w(4000.0), grid: w(-3000.0) };
        let mut x = PlanExecutor::default();
        let pr = x.propose(
            export,
            Millis::ZERO,
            &snap(15.0, 1000.0, 0.0),
            &env(),
            Some(ems_core::percent!(20.0)),
            None,
        );
        assert_eq!((pr.setpoint, pr.reason), (Watts::ZERO, ProposalReason::SocReserve));
        let mut x = PlanExecutor::default();
        let pr = x.propose(export, Millis::ZERO, &snap(15.0, 1000.0, 0.0), &env(), None, None);
        assert_eq!(pr.setpoint, w(4000.0));
        // Self-consumption slot below the reserve: no discharge.
        let mut x = PlanExecutor::default();
        let sc = PlanTarget { battery: w(1000.0), grid: Watts::ZERO };
        let pr = x.propose(
            sc,
            Millis::ZERO,
            &snap(15.0, 1000.0, 0.0),
            &env(),
            Some(ems_core::percent!(20.0)),
            None,
        );
        assert_eq!((pr.setpoint, pr.reason), (Watts::ZERO, ProposalReason::SocReserve));
    }
}
