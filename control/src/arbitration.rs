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
//! 2. **Grid services** ([`crate::GridService`], called by [`crate::Controller::step_with`]):
//!    a request either *replaces* the set-point or *adds* its Δ to the baseline of the layers
//!    below; its [`crate::Reserve`] narrows the envelope those layers see (the baseline is cut
//!    into it before the Δ is added), and its own ramp replaces the comfort ramp while it acts.
//! 3. **Operator / API overrides** ([`crate::Inputs::ess_override`], [`Override`]): they
//!    *modify* what the layers below proposed — `NO_DISCHARGE` clamps it to ≤ 0,
//!    `LIMIT_CHARGE` bounds the charge magnitude, `LIMIT_DISCHARGE` bounds the discharge,
//!    `FORCE_CHARGE` replaces it by `−power`. The source is the override only if it changed the
//!    value (or forces it); a limit that does not bind leaves the source with the layer below.
//!    An invalid override (a negative power) is ignored and reported in
//!    [`crate::Output::override_refused`]; the layers below and safety still apply.
//! 4. **Operator rules** ([`crate::Inputs::rule`], [`RuleTarget`]): the one action the rules
//!    engine (`ems_strategies::rules`, off the control thread) chose for this cycle, an
//!    [`Override`] applied exactly like an operator override — to the provider's, the plan's
//!    or the mode's set-point — and named [`CommandSource::Rule`] with the rule's index when it
//!    changed (or forced) the value. A live operator override then applies on top of the
//!    rule's result (the operator outranks the rules the operator wrote). An invalid rule
//!    action is ignored and reported in [`crate::Output::rule_refused`]. A rule can never
//!    widen the envelope: its result goes through the final clamp like every proposal.
//! 5. **Provider schedule** ([`crate::Inputs::provider`], [`ProviderTarget`]): a signed
//!    `CHARGE`/`DISCHARGE` due now replaces the plan's and the mode's proposal. Rules and an
//!    operator override still apply on top of it (the site's operator outranks a schedule).
//! 6. **Plan** ([`crate::Inputs::plan`], [`PlanTarget`]): the current slot of a day-ahead
//!    plan replaces the mode's proposal (execution policy below).
//! 7. **Default mode** ([`crate::ModeSetting`]).
//!
//! Every result names its winner ([`Arbitrated::source`]) and the layer it overruled
//! ([`Arbitrated::over`]); this is the only place that decides who wins.
//!
//! Lifetimes, watchdogs and `until` of overrides live in the API layer, latches and `until` of
//! rules in the rules engine: the controller applies whatever it is given in each cycle and
//! forgets it in the next.
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

use crate::grid_service::{GridAction, GridRequest};
pub use crate::proposal::{CommandSource, OverrideKind, ProviderOperation};
use crate::proposal::{Feedback, Proposal, ProposalReason};
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
    ///
    /// # Errors
    /// [`OverrideError`] naming the field when a power is negative.
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

/// The action of the operator rule that won this cycle (chosen by the rules engine in
/// `ems_strategies::rules`; ranked between the provider schedule and the operator override).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleTarget {
    /// What the rule does, applied like an operator override ([`Override::apply`]); must pass
    /// [`Override::validate`].
    pub action: Override,
    /// The rule's index in its rule set; [`CommandSource::Rule`] carries it and the shell maps
    /// it back to the rule's name.
    pub id: u16,
}

/// The current slot of a day-ahead plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanTarget {
    /// Planned net battery power (`+` discharge / `−` charge).
    pub battery: Watts,
    /// Planned grid power (`+` import / `−` export).
    pub grid: Watts,
}

/// A provider schedule due in this cycle (design.md §7): `CHARGE` or `DISCHARGE` at `power`
/// watts. The API layer checks signatures, replay and time; the controller only ranks it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderTarget {
    /// `CHARGE` or `DISCHARGE`.
    pub operation: ProviderOperation,
    /// The power, a magnitude (a negative value counts as its magnitude).
    pub power: Watts,
    /// Whether a `DISCHARGE` may export: `false` discharges at most into the site's own load
    /// (the grid stays at or above zero import). Ignored for `CHARGE`.
    pub may_export: bool,
}

impl ProviderTarget {
    /// The battery set-point it asks for (`+` discharge / `−` charge), before any no-export
    /// limit.
    #[must_use]
    pub fn setpoint(&self) -> Watts {
        match self.operation {
            ProviderOperation::Charge => -self.power.abs(),
            ProviderOperation::Discharge => self.power.abs(),
        }
    }

    /// The set-point for this cycle: a `DISCHARGE` that may not export is limited to the site's
    /// net load (as a plan hold slot planned without export; without good grid and battery
    /// readings the power is proposed as it is and safety bounds it).
    #[must_use]
    pub fn setpoint_at(&self, now: Millis, snapshot: &Snapshot) -> Watts {
        match self.operation {
            ProviderOperation::Discharge if !self.may_export => {
                keep_grid_side(PlanTarget { battery: self.setpoint(), grid: Watts::ZERO }, now, snapshot)
            }
            ProviderOperation::Charge | ProviderOperation::Discharge => self.setpoint(),
        }
    }
}

/// The set-point chosen by arbitration, before the final clamp, and the reasons for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arbitrated {
    /// The set-point to hand to the final clamp.
    pub setpoint: Watts,
    /// Who set it.
    pub source: CommandSource,
    /// The layer below [`Self::source`] whose proposal the winner modified, replaced or added
    /// to (`None` when the winner is the lowest layer that proposed).
    pub over: Option<CommandSource>,
    /// The baseline (what the layers below a grid service proposed) was cut by the service's
    /// reserve: [`ems_core::event::Constraint::GridServiceReserve`].
    pub reserve_bound: bool,
}

/// Everything arbitration ranks in one cycle, lowest priority first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidates {
    /// The default mode's proposal.
    pub mode: Proposal,
    /// The plan executor's proposal for this cycle's slot.
    pub plan: Option<Proposal>,
    /// A provider schedule due now, with its set-point for this cycle
    /// ([`ProviderTarget::setpoint_at`]).
    pub provider: Option<(ProviderOperation, Watts)>,
    /// The winning operator rule's action, validated by the caller ([`Override::validate`]).
    pub rule: Option<RuleTarget>,
    /// The operator/API override, validated by the caller ([`Override::validate`]).
    pub ess_override: Option<Override>,
    /// A grid service's request, with its name.
    pub grid: Option<(&'static str, GridRequest)>,
}

/// Arbitrate one cycle (the rule is in the module docs): mode < plan < provider schedule <
/// operator rule < operator override < grid service; safety bounds the result afterwards. `narrowed` is the
/// envelope the layers below a grid service may use (the envelope minus the service's reserve).
#[must_use]
pub fn arbitrate(c: &Candidates, narrowed: &Envelope) -> Arbitrated {
    let mut a = Arbitrated {
        setpoint: c.mode.setpoint,
        source: CommandSource::Mode(c.mode.reason),
        over: None,
        reserve_bound: false,
    };
    if let Some(p) = c.plan {
        a = Arbitrated {
            setpoint: p.setpoint,
            source: CommandSource::Plan(p.reason),
            over: Some(a.source),
            ..a
        };
    }
    if let Some((operation, setpoint)) = c.provider {
        a = Arbitrated { setpoint, source: CommandSource::Provider(operation), over: Some(a.source), ..a };
    }
    if let Some(r) = c.rule {
        a = modify(a, r.action, CommandSource::Rule { kind: r.action.kind(), id: r.id });
    }
    if let Some(o) = c.ess_override {
        a = modify(a, o, CommandSource::Override(o.kind()));
    }
    let Some((name, request)) = c.grid else {
        return a;
    };
    // The baseline may only use what the service left: cut it into the narrowed envelope.
    let (baseline, cut) = narrowed.clamp(a.setpoint);
    a.reserve_bound = cut.is_some();
    a.setpoint = baseline;
    match request.action {
        GridAction::Idle => a,
        GridAction::Add(delta) if delta == Watts::ZERO => a,
        GridAction::Add(delta) => Arbitrated {
            setpoint: baseline + delta,
            source: CommandSource::GridService { name, added: true },
            over: Some(a.source),
            ..a
        },
        GridAction::Replace(setpoint) => Arbitrated {
            setpoint,
            source: CommandSource::GridService { name, added: false },
            over: Some(a.source),
            ..a
        },
    }
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

/// An override-like layer (a rule, the operator's override) applied to what the layers below
/// chose: it becomes the source only if it changed the value or forces it.
fn modify(a: Arbitrated, o: Override, source: CommandSource) -> Arbitrated {
    let applied = o.apply(a.setpoint);
    let forced = matches!(o, Override::ForceCharge { .. });
    if forced || applied != a.setpoint {
        Arbitrated { setpoint: applied, source, over: Some(a.source), ..a }
    } else {
        a
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

    fn cands(mode: Proposal, plan: Option<Proposal>, o: Option<Override>) -> Candidates {
        Candidates { mode, plan, provider: None, rule: None, ess_override: o, grid: None }
    }

    fn wide() -> Envelope {
        Envelope::new(w(10_000.0))
    }

    fn request(action: GridAction, reserve: crate::Reserve) -> GridRequest {
        GridRequest { action, reserve, ramp: None }
    }

    #[test]
    fn priority_grid_service_over_override_over_provider_over_plan_over_mode() {
        let mode = p(1000.0, ProposalReason::SelfConsumption);
        let plan = Some(p(-2000.0, ProposalReason::PlanHold));
        let nd = Some(Override::NoDischarge);
        let e = wide();
        assert_eq!(
            arbitrate(&cands(mode, None, None), &e).source,
            CommandSource::Mode(ProposalReason::SelfConsumption)
        );
        let a = arbitrate(&cands(mode, plan, None), &e);
        assert_eq!((a.setpoint, a.source), (w(-2000.0), CommandSource::Plan(ProposalReason::PlanHold)));
        assert_eq!(a.over, Some(CommandSource::Mode(ProposalReason::SelfConsumption)));
        // NO_DISCHARGE does not bind on a planned charge: the plan stays the source.
        assert_eq!(
            arbitrate(&cands(mode, plan, nd), &e).source,
            CommandSource::Plan(ProposalReason::PlanHold)
        );
        // … but it binds on the mode's discharge.
        let a = arbitrate(&cands(mode, None, nd), &e);
        assert_eq!((a.setpoint, a.source), (Watts::ZERO, CommandSource::Override(OverrideKind::NoDischarge)));
        // A provider DISCHARGE replaces plan and mode; the operator's NO_DISCHARGE still wins.
        let discharge = Some((ProviderOperation::Discharge, w(2500.0)));
        let a = arbitrate(&Candidates { provider: discharge, ..cands(mode, plan, None) }, &e);
        assert_eq!(
            (a.setpoint, a.source),
            (w(2500.0), CommandSource::Provider(ProviderOperation::Discharge))
        );
        assert_eq!(a.over, Some(CommandSource::Plan(ProposalReason::PlanHold)));
        let a = arbitrate(&Candidates { provider: discharge, ..cands(mode, plan, nd) }, &e);
        assert_eq!((a.setpoint, a.source), (Watts::ZERO, CommandSource::Override(OverrideKind::NoDischarge)));
        assert_eq!(a.over, Some(CommandSource::Provider(ProviderOperation::Discharge)));
        // A grid service outranks all of them.
        let g = Some(("FCR", request(GridAction::Replace(w(3000.0)), crate::Reserve::NONE)));
        let a = arbitrate(&Candidates { grid: g, ..cands(mode, plan, nd) }, &e);
        assert_eq!(
            (a.setpoint, a.source),
            (w(3000.0), CommandSource::GridService { name: "FCR", added: false })
        );
        assert_eq!(a.source.to_string(), "grid service FCR");
    }

    fn rule(action: Override, id: u16) -> Option<RuleTarget> {
        Some(RuleTarget { action, id })
    }

    #[test]
    fn a_rule_ranks_above_provider_and_plan_and_below_the_operator_override() {
        let mode = p(1000.0, ProposalReason::SelfConsumption);
        let plan = Some(p(2000.0, ProposalReason::PlanHold));
        let discharge = Some((ProviderOperation::Discharge, w(2500.0)));
        let e = wide();
        let nd_rule = rule(Override::NoDischarge, 2);
        // Rule over plan: the planned discharge is stopped, the rule is the source.
        let a = arbitrate(&Candidates { rule: nd_rule, ..cands(mode, plan, None) }, &e);
        assert_eq!(
            (a.setpoint, a.source),
            (Watts::ZERO, CommandSource::Rule { kind: OverrideKind::NoDischarge, id: 2 })
        );
        assert_eq!(a.over, Some(CommandSource::Plan(ProposalReason::PlanHold)));
        // Rule over provider schedule: a rule's limit bounds the provider's DISCHARGE.
        let ld = rule(Override::LimitDischarge { max_discharge_power: w(800.0) }, 0);
        let a = arbitrate(&Candidates { provider: discharge, rule: ld, ..cands(mode, plan, None) }, &e);
        assert_eq!(
            (a.setpoint, a.source),
            (w(800.0), CommandSource::Rule { kind: OverrideKind::LimitDischarge, id: 0 })
        );
        assert_eq!(a.over, Some(CommandSource::Provider(ProviderOperation::Discharge)));
        // The operator override applies on top of the rule's result.
        let a = arbitrate(
            &Candidates { provider: discharge, rule: ld, ..cands(mode, plan, Some(Override::NoDischarge)) },
            &e,
        );
        assert_eq!((a.setpoint, a.source), (Watts::ZERO, CommandSource::Override(OverrideKind::NoDischarge)));
        assert_eq!(a.over, Some(CommandSource::Rule { kind: OverrideKind::LimitDischarge, id: 0 }));
        // A forcing rule under a limiting override: the override bounds the forced charge.
        let fc = rule(Override::ForceCharge { power: w(3000.0) }, 5);
        let lc = Some(Override::LimitCharge { max_charge_power: w(1000.0) });
        let a = arbitrate(&Candidates { rule: fc, ..cands(mode, plan, lc) }, &e);
        assert_eq!((a.setpoint, a.source), (w(-1000.0), CommandSource::Override(OverrideKind::LimitCharge)));
        // … and alone it forces the charge over plan and mode.
        let a = arbitrate(&Candidates { rule: fc, ..cands(mode, plan, None) }, &e);
        assert_eq!(
            (a.setpoint, a.source),
            (w(-3000.0), CommandSource::Rule { kind: OverrideKind::ForceCharge, id: 5 })
        );
        // An override that changes nothing keeps the rule as the source.
        let a = arbitrate(&Candidates { rule: fc, ..cands(mode, plan, Some(Override::NoDischarge)) }, &e);
        assert_eq!(a.source, CommandSource::Rule { kind: OverrideKind::ForceCharge, id: 5 });
        // A rule that does not bind leaves the source with the layer below.
        let lc_rule = rule(Override::LimitCharge { max_charge_power: w(500.0) }, 1);
        let a = arbitrate(&Candidates { rule: lc_rule, ..cands(mode, plan, None) }, &e);
        assert_eq!((a.setpoint, a.source), (w(2000.0), CommandSource::Plan(ProposalReason::PlanHold)));
        // A grid service outranks the rule.
        let g = Some(("FCR", request(GridAction::Replace(w(1500.0)), crate::Reserve::NONE)));
        let a = arbitrate(&Candidates { rule: nd_rule, grid: g, ..cands(mode, plan, None) }, &e);
        assert_eq!(a.source, CommandSource::GridService { name: "FCR", added: false });
        assert_eq!(
            CommandSource::Rule { kind: OverrideKind::NoDischarge, id: 2 }.to_string(),
            "rule #2 NO_DISCHARGE"
        );
    }

    #[test]
    fn a_grid_service_adds_to_the_baseline_cut_into_what_its_reserve_leaves() {
        let mode = p(4000.0, ProposalReason::PeakShaving);
        let full = wide();
        let reserve = crate::Reserve { discharge: w(7000.0), ..crate::Reserve::NONE };
        let narrowed = reserve.narrow(&full, None, None);
        assert_eq!(narrowed.max_discharge(), w(3000.0));
        let g = Some(("FCR-N", request(GridAction::Add(w(-500.0)), reserve)));
        let a = arbitrate(&Candidates { grid: g, ..cands(mode, None, None) }, &narrowed);
        // Baseline 4 kW cut to the 3 kW the reserve leaves, then the service's −500 W.
        assert_eq!(a.setpoint, w(2500.0));
        assert!(a.reserve_bound);
        assert_eq!(a.source, CommandSource::GridService { name: "FCR-N", added: true });
        assert_eq!(a.over, Some(CommandSource::Mode(ProposalReason::PeakShaving)));
        // Idle: the reserve holds, the baseline keeps its source.
        let g = Some(("FCR-N", request(GridAction::Idle, reserve)));
        let a = arbitrate(&Candidates { grid: g, ..cands(mode, None, None) }, &narrowed);
        assert_eq!((a.setpoint, a.source), (w(3000.0), CommandSource::Mode(ProposalReason::PeakShaving)));
    }

    #[test]
    fn an_energy_reserve_without_capacity_or_soc_keeps_the_whole_direction() {
        let full = wide();
        let r =
            crate::Reserve { energy_for_discharge: ems_core::watt_hours!(1000.0), ..crate::Reserve::NONE };
        assert_eq!(r.narrow(&full, None, None).max_discharge(), Watts::ZERO);
        let cap = Some(ems_core::watt_hours!(10_000.0));
        // 50 % of 10 kWh = 5 kWh stored > 1 kWh reserved: discharge allowed.
        assert_eq!(r.narrow(&full, cap, Some(ems_core::percent!(50.0))).max_discharge(), w(10_000.0));
        // 5 % = 500 Wh stored ≤ 1 kWh reserved: the baseline may not discharge.
        assert_eq!(r.narrow(&full, cap, Some(ems_core::percent!(5.0))).max_discharge(), Watts::ZERO);
        let r = crate::Reserve { energy_for_charge: ems_core::watt_hours!(1000.0), ..crate::Reserve::NONE };
        assert_eq!(r.narrow(&full, cap, Some(ems_core::percent!(95.0))).max_charge(), Watts::ZERO);
        assert_eq!(r.narrow(&full, cap, Some(ems_core::percent!(50.0))).max_charge(), w(10_000.0));
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
            arbitrate(&cands(mode, None, Some(fc)), &wide()).source,
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
