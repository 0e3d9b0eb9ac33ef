//! The vocabulary of proposals: what a layer proposes ([`Proposal`], [`ProposalReason`]), who
//! set the set-point ([`CommandSource`]), what became of the previous one ([`Feedback`]) and why
//! a mode's settings are refused ([`ModeError`]). The modes, the plan executor, arbitration and
//! the controller all use these; this module uses none of them, so none imports another back.

use crate::tracking::Follow;
use core::fmt;
use ems_core::{Percent, Watts};

/// Invalid mode settings.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ModeError {
    /// A fixed charge power must be ≥ 0 (it is a magnitude).
    #[error("charge-only: field 'power' = {0} must be >= 0 W")]
    NegativePower(Watts),
    /// The import limit must be ≥ 0.
    #[error("charge-only: field 'max_grid_import' = {0} must be >= 0 W")]
    NegativeImportLimit(Watts),
    /// A power limit or cap of a mode must be ≥ 0 (it is a magnitude).
    #[error("{mode}: field '{field}' = {value} must be >= 0 W")]
    NegativeLimit {
        /// The mode (`self-consumption`, `peak-shaving`).
        mode: &'static str,
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: Watts,
    },
    /// Peak shaving: the reserve must not lie above the recharge target.
    #[error("peak-shaving: field 'reserve_soc' = {reserve} must be <= field 'target_soc' = {target}")]
    ReserveAboveTarget {
        /// The reserve.
        reserve: Percent,
        /// The target.
        target: Percent,
    },
    /// Peak shaving: a slot starts outside the day.
    #[error("peak-shaving: field 'slots[{index}].start_minute' = {value} must be < 1440")]
    SlotStart {
        /// Index of the slot.
        index: usize,
        /// The rejected start minute.
        value: u16,
    },
    /// Peak shaving: slots must be ordered by strictly increasing start minute.
    #[error(
        "peak-shaving: field 'slots[{index}].start_minute' = {value} must be > the previous slot's start {previous}"
    )]
    SlotOrder {
        /// Index of the slot.
        index: usize,
        /// Its start minute.
        value: u16,
        /// The previous slot's start minute.
        previous: u16,
    },
    /// Peak shaving: a slot's cap must be ≥ 0.
    #[error("peak-shaving: field 'slots[{index}].{field}' = {value} must be >= 0 W")]
    SlotLimit {
        /// Index of the slot.
        index: usize,
        /// `import_cap` or `export_cap`.
        field: &'static str,
        /// The rejected value.
        value: Watts,
    },
}

/// Why a mode proposed what it proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProposalReason {
    /// Passive mode: observe only.
    Passive,
    /// Charging from PV surplus.
    PvSurplus,
    /// Charging at the fixed power.
    FixedPower,
    /// The fixed power was reduced to keep grid import under the mode's limit.
    GridImportLimit,
    /// SOC target reached.
    SocTargetReached,
    /// A signal the mode needs is not good; it proposes zero.
    SignalUnavailable,
    /// Nothing to charge from.
    NoSurplus,
    /// The manual set-point.
    Manual,
    /// Following the grid set-point (self-consumption, or a self-consumption slot of a plan).
    SelfConsumption,
    /// Discharge held at zero: the SOC is at the mode's reserve.
    SocReserve,
    /// The mode's own charge/discharge limit bounds the proposal.
    ModePowerLimit,
    /// Discharging to hold import at the cap.
    PeakShaving,
    /// Charging to hold export at the export cap.
    ExportCap,
    /// Recharging within the import headroom toward the target SOC.
    Recharge,
    /// Import and export are within the caps: nothing to do.
    WithinCaps,
    /// Holding the planned battery power of a day-ahead plan slot.
    PlanHold,
}

impl fmt::Display for ProposalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Passive => "passive mode",
            Self::PvSurplus => "PV surplus",
            Self::FixedPower => "fixed charge power",
            Self::GridImportLimit => "mode grid import limit",
            Self::SocTargetReached => "SOC target reached",
            Self::SignalUnavailable => "signal unavailable",
            Self::NoSurplus => "no PV surplus",
            Self::Manual => "manual set-point",
            Self::SelfConsumption => "self-consumption",
            Self::SocReserve => "SOC reserve",
            Self::ModePowerLimit => "mode power limit",
            Self::PeakShaving => "peak shaving",
            Self::ExportCap => "export cap",
            Self::Recharge => "recharge",
            Self::WithinCaps => "within caps",
            Self::PlanHold => "planned battery power",
        })
    }
}

/// A mode's proposal for one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    /// Proposed battery set-point, `+` discharge / `−` charge.
    pub setpoint: Watts,
    /// Why.
    pub reason: ProposalReason,
}

/// What the controller did with the previous cycle's set-point: the knowledge the modes'
/// integrators need for anti-windup (issue #10).
///
/// A mode's grid loop sees the meter, not the command. While the battery is not doing what the
/// mode asked — the controller is not RUNNING, the ramp is still on its way, the envelope cut
/// the request, an override, the plan or a grid service set it — the grid error is not the
/// mode's doing, and an integrator that accumulates it winds up and overshoots once the battery
/// follows again (PV-surplus charging imported +500 W for minutes after every start). The
/// controller passes this record of the previous cycle to [`Mode::propose_with`]; the mode
/// compares it with its own previous proposal and holds its integrator unless the proposal was
/// commanded as it was (conditional integration). Outside RUNNING the integrators are held, not
/// reset (why, and why not back-calculation: `control/src/tracking.rs`, "Anti-windup").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    /// The battery set-point commanded in the previous cycle (after arbitration, the final clamp
    /// and the ramp).
    pub commanded: Watts,
    /// Who set the previous cycle's request ([`CommandSource::NotRunning`] outside RUNNING and
    /// before the first cycle).
    pub source: CommandSource,
}

/// A commanded set-point within this of the proposal counts as "commanded as proposed" (the
/// ramper's float arithmetic may leave an ulp).
const FOLLOW_TOLERANCE: Watts = ems_core::watts!(1.0);

impl Feedback {
    /// What became of `proposed` (the previous cycle's proposal of a layer whose commands show
    /// up as a source accepted by `is_mine`).
    pub(crate) fn follow(
        feedback: Option<Self>,
        proposed: Option<Watts>,
        is_mine: impl Fn(CommandSource) -> bool,
    ) -> Follow {
        let Some(fb) = feedback else {
            // No controller in between: the caller applies proposals as they are.
            return Follow::Commanded;
        };
        // `NotRunning` is nobody's source: held.
        match proposed {
            Some(p) if is_mine(fb.source) && (fb.commanded - p).abs() <= FOLLOW_TOLERANCE => {
                Follow::Commanded
            }
            Some(_) | None => Follow::Held,
        }
    }
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

/// What a provider schedule asks (design.md §7, `operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderOperation {
    /// `CHARGE`.
    Charge,
    /// `DISCHARGE`.
    Discharge,
}

impl fmt::Display for ProviderOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Charge => "CHARGE",
            Self::Discharge => "DISCHARGE",
        })
    }
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
    /// A provider schedule due now.
    Provider(ProviderOperation),
    /// An operator rule (`ems_strategies::rules`) changed (or forced) the set-point.
    Rule {
        /// The rule's action.
        kind: OverrideKind,
        /// The rule's index in its rule set ([`crate::RuleTarget::id`]); the shell maps it to
        /// the rule's name.
        id: u16,
    },
    /// An operator/API override changed (or forced) the set-point.
    Override(OverrideKind),
    /// A grid service replaced the set-point (`added: false`) or added its Δ to the baseline
    /// (`added: true`).
    GridService {
        /// The service's name ([`crate::GridService::name`]).
        name: &'static str,
        /// Whether the service added a Δ rather than replacing the set-point.
        added: bool,
    },
}

impl fmt::Display for CommandSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRunning => f.write_str("not RUNNING"),
            Self::Mode(r) => write!(f, "mode: {r}"),
            Self::Plan(r) => write!(f, "plan: {r}"),
            Self::Provider(o) => write!(f, "provider schedule {o}"),
            Self::Rule { kind, id } => write!(f, "rule #{id} {kind}"),
            Self::Override(k) => write!(f, "override {k}"),
            Self::GridService { name, added: false } => write!(f, "grid service {name}"),
            Self::GridService { name, added: true } => {
                write!(f, "grid service {name} (added to the baseline)")
            }
        }
    }
}
