//! What the control thread and the planner thread tell each other, and how site time follows
//! control time.

use ems_control::{CommandSource, RuleTarget};
use ems_core::{Millis, Watts};
use jiff::{SignedDuration, Timestamp};

/// How site time (UTC) follows control time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SiteClock {
    /// A real site: the wall clock.
    Wall,
    /// The simulated site: `start` at control time zero, advancing with control time (so a
    /// run at `--speed 60` lives an hour per minute).
    // Only the built-in simulated site runs on simulated time (a production build has none).
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    Simulated {
        /// Site time at control time zero.
        start: Timestamp,
    },
}

impl SiteClock {
    /// Site time at control time `now`.
    pub(crate) fn at(self, now: Millis) -> Timestamp {
        match self {
            Self::Wall => Timestamp::now(),
            Self::Simulated { start } => {
                let ms = i64::try_from(now.get()).unwrap_or(i64::MAX);
                start.checked_add(SignedDuration::from_millis(ms)).unwrap_or(Timestamp::MAX)
            }
        }
    }
}

/// One planned slot, as the control thread needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LoopSlot {
    /// Start (UTC).
    pub start: Timestamp,
    /// End (UTC).
    pub end: Timestamp,
    /// Planned battery power (`+` discharge).
    pub battery: Watts,
    /// Planned grid power (`+` import).
    pub grid: Watts,
}

/// A plan as the control thread holds it: its slots and when it expires (two re-planning
/// intervals after it was made; then the configured mode takes over).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoopPlan {
    /// Slots in time order, not overlapping.
    pub slots: Vec<LoopSlot>,
    /// No slot of this plan is used at or after this time.
    pub expires_at: Timestamp,
}

/// The winning operator rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActiveRule {
    /// What reaches the controller.
    pub target: RuleTarget,
    /// The rule's name.
    pub name: String,
}

/// One measured interval (means).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Start of the interval.
    pub at: Timestamp,
    /// Its length.
    pub dt: SignedDuration,
    /// Mean grid power (`+` import).
    pub grid: Watts,
    /// Mean PV power.
    pub pv: Watts,
    /// Mean battery power (`+` discharge).
    pub battery: Watts,
    /// SOC at the end, % (None: not known now).
    pub soc: Option<f32>,
}

/// The loop's state every second, for rules and re-planning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tick {
    /// Site time.
    pub at: Timestamp,
    /// SOC, % (None: not known now).
    pub soc: Option<f32>,
    /// Grid power (`+` import).
    pub grid: Watts,
    /// PV power.
    pub pv: Watts,
    /// Battery power (`+` discharge).
    pub battery: Watts,
    /// The inverter's nameplate rating as the device reports it.
    pub rating: Watts,
    /// What set the set-point this cycle.
    pub source: CommandSource,
    /// The controller's default mode.
    pub mode: ems_control::ModeSetting,
}

/// Control thread → planner.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ToPlanner {
    /// Every second.
    Tick(Tick),
    /// Every minute.
    Sample(Sample),
}

/// Planner → control thread.
#[derive(Debug, Clone)]
pub(crate) enum ToLoop {
    /// A new plan, or none (the mode alone).
    Plan(Option<std::sync::Arc<LoopPlan>>),
    /// The winning rule, or none.
    Rule(Option<ActiveRule>),
}
